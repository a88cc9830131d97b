"""Container health check: asks the service this container runs for ``/healthz``.

``python -m deploy.tools.healthcheck [--ready] [SERVICE]`` exits 0 when the service
answers 200, 1 otherwise. Without ``SERVICE`` it finds the service in the container's
main command (``python -m services.<name>``). The port comes from the service's own
settings, so ``CLOSELOOP_<SERVICE>_HTTP_PORT`` is honoured. ``--ready`` asks
``/readyz`` instead: broker and database reachable, consumers started.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from shared.settings import ServiceSettings

SERVICES = ("intake", "classifier", "router", "followup", "insights")
_MODULE = re.compile(r"^services\.(?P<name>[a-z]+)(\.__main__)?$")


def service_in_command(argv: Sequence[str]) -> str | None:
    """The closeloop service a command line runs, e.g. ``python -m services.router``."""
    for arg in argv:
        match = _MODULE.match(arg)
        if match and match["name"] in SERVICES:
            return match["name"]
    return None


def main_command(proc: Path = Path("/proc/1/cmdline")) -> list[str]:
    try:
        raw = proc.read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def settings_of(service: str) -> ServiceSettings:
    """The service's settings, read from the environment exactly as the service reads them."""
    module = importlib.import_module(f"services.{service}.settings")
    settings = getattr(module, f"{service.capitalize()}Settings")()
    if not isinstance(settings, ServiceSettings):
        raise TypeError(f"services.{service}.settings has no settings class")
    return settings


def probe(url: str, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.tools.healthcheck")
    parser.add_argument("service", nargs="?", choices=SERVICES)
    parser.add_argument("--ready", action="store_true", help="probe /readyz instead of /healthz")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    service = args.service or service_in_command(main_command())
    if service is None:
        print("no closeloop service in the container's command", file=sys.stderr)
        return 1
    port = settings_of(service).http_port
    path = "/readyz" if args.ready else "/healthz"
    url = f"http://127.0.0.1:{port}{path}"
    if probe(url, args.timeout):
        return 0
    print(f"{service}: {url} did not answer 200", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
