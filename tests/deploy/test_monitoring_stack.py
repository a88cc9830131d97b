"""A real Prometheus (Debian's package) scraping the five services as processes.

Prometheus runs with deploy/prometheus/prometheus.yml (only the targets moved to free
ports, and faster intervals) and the alert rules; the services run against the real
broker and database of the test session.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from shared.tools import devstack
from tests.conftest import Infra
from tests.deploy import manifests
from tests.deploy.manifests import DEPLOY, SERVICES
from tests.support import eventually

# Grafana fills these in before a query reaches Prometheus.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "1h",
    "$__interval": "15s",
    "$team": ".*",
    "${datasource}": "prometheus",
}
# Series Prometheus itself makes for every target.
PROMETHEUS_SERIES = {"up"}


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: install Debian's prometheus package (make test does)")
    return path


@dataclass
class Stack:
    infra: Infra
    ports: dict[str, int]
    prometheus: str
    log_dir: Path

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"


def prometheus_config(ports: dict[str, int]) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with its targets on this test's ports."""
    config: dict[str, Any] = manifests.load(DEPLOY / "prometheus" / "prometheus.yml")
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / "prometheus" / rule) for rule in config["rule_files"]]
    for job in config["scrape_configs"]:
        service = job["job_name"].removeprefix("closeloop-")
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[service]}"]}]
    return config


@pytest.fixture(scope="module")
def stack(infra: Infra) -> Iterator[Stack]:
    prometheus_bin = binary("prometheus")
    database = f"monitoring_{uuid.uuid4().hex[:8]}"
    group_suffix = uuid.uuid4().hex[:6]
    ports = {name: devstack.free_port() for name in SERVICES}
    log_dir = Path(tempfile.mkdtemp(prefix="closeloop-monitoring-"))
    processes: list[devstack.Process] = []
    try:
        for name in SERVICES:
            env = devstack.service_env(
                name,
                http_port=ports[name],
                kafka_port=infra.kafka_port,
                mongo_port=infra.mongo_port,
                database=database,
                extra={
                    f"{manifests.prefix(name)}KAFKA_CONSUMER_GROUP": f"mon-{name}-{group_suffix}"
                },
            )
            # Started together, waited for below: their imports overlap.
            process = devstack.spawn(
                name,
                [sys.executable, "-m", f"services.{name}"],
                env=env,
                log=log_dir / f"{name}.log",
            )
            process.port = ports[name]
            processes.append(process)
        for process in processes:
            assert process.port is not None
            devstack.wait_for_port(process.port, timeout=120, process=process.popen)
        config = log_dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(ports)), encoding="utf-8")
        prometheus_port = devstack.free_port()
        prometheus = devstack.spawn(
            "prometheus",
            [
                prometheus_bin,
                f"--config.file={config}",
                f"--storage.tsdb.path={log_dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ],
            log=log_dir / "prometheus.log",
        )
        processes.append(prometheus)
        devstack.wait_for_port(prometheus_port, timeout=60, process=prometheus.popen)
        yield Stack(infra, ports, f"http://127.0.0.1:{prometheus_port}", log_dir)
    finally:
        for process in reversed(processes):
            process.stop()


@pytest.fixture
async def http() -> Any:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def query(http: httpx.AsyncClient, stack: Stack, expr: str) -> list[dict[str, Any]]:
    response = await http.get(f"{stack.prometheus}/api/v1/query", params={"query": expr})
    body = response.json()
    assert body["status"] == "success", f"{expr}: {body.get('error')}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def test_prometheus_scrapes_a_metric_from_each_service(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    async def every_service_scraped() -> dict[str, str] | None:
        series = await query(http, stack, "closeloop_service_info")
        found = {s["metric"]["job"]: s["metric"]["service"] for s in series}
        return found if len(found) == len(SERVICES) else None

    found = await eventually(every_service_scraped, timeout=60)
    assert found == {f"closeloop-{name}": name for name in SERVICES}
    up = await query(http, stack, 'up{job=~"closeloop-.+"}')
    assert {s["metric"]["job"]: s["value"][1] for s in up} == {
        f"closeloop-{name}": "1" for name in SERVICES
    }

    # The services count Prometheus's own scrapes: a metric that moves with each one.
    async def scrapes_counted() -> set[str] | None:
        series = await query(
            http, stack, 'sum by (job) (closeloop_http_requests_total{route="/metrics"}) > 0'
        )
        jobs = {s["metric"]["job"] for s in series}
        return jobs if jobs == set(found) else None

    assert await eventually(scrapes_counted, timeout=30) == set(found)


async def test_prometheus_evaluates_every_rule_without_errors(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    expected = {name for name, _ in manifests.rule_exprs()}

    async def every_rule_evaluated() -> list[dict[str, Any]] | None:
        body = (await http.get(f"{stack.prometheus}/api/v1/rules")).json()
        rules = [rule for group in body["data"]["groups"] for rule in group["rules"]]
        evaluated = [rule for rule in rules if rule.get("lastEvaluation", "").startswith("2")]
        return rules if rules and len(evaluated) == len(rules) else None

    rules = await eventually(every_rule_evaluated, timeout=30)
    assert {rule["name"] for rule in rules} == expected
    assert [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"] == []


async def test_every_dashboard_query_is_promql_the_server_accepts(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    for dashboard in manifests.dashboards().values():
        for title, expr in manifests.grafana_exprs(dashboard):
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            response = await http.get(f"{stack.prometheus}/api/v1/query", params={"query": expr})
            assert response.json()["status"] == "success", (title, response.json())


async def metric_types(http: httpx.AsyncClient, stack: Stack) -> dict[str, str]:
    """Every metric family a service exposes (its # TYPE lines), with its type."""
    types: dict[str, str] = {}
    for service in SERVICES:
        text = (await http.get(f"{stack.url(service)}/metrics")).text
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(maxsplit=3)
                types[name] = kind
            elif line.startswith("# HELP "):
                types.setdefault(line.split(maxsplit=3)[2], "untyped")
    return types


def exposed(name: str, types: dict[str, str]) -> bool:
    if name in types:
        return True
    for suffix, kinds in (
        ("_bucket", ("histogram",)),
        ("_count", ("histogram", "summary")),
        ("_sum", ("histogram", "summary")),
        ("_total", ("counter",)),
        ("_info", ("info",)),
    ):
        if name.endswith(suffix) and types.get(name.removesuffix(suffix)) in kinds:
            return True
    return False


async def test_every_metric_a_dashboard_or_rule_uses_exists_in_a_service(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    types = await metric_types(http, stack)
    assert "closeloop_service_info" in types or "closeloop_service" in types
    used: dict[str, set[str]] = {}
    for where, expr in manifests.rule_exprs():
        for name in manifests.metric_names(expr):
            used.setdefault(name, set()).add(f"rule {where}")
    for file, dashboard in manifests.dashboards().items():
        for title, expr in manifests.grafana_exprs(dashboard):
            for name in manifests.metric_names(expr):
                used.setdefault(name, set()).add(f"{file}: {title}")
    known = manifests.recorded_names() | PROMETHEUS_SERIES
    missing = {
        name: sorted(places)
        for name, places in sorted(used.items())
        if name not in known and not exposed(name, types)
    }
    assert missing == {}


def run_healthcheck(*args: str, env: dict[str, str]) -> int:
    return subprocess.run(
        [sys.executable, "-m", "deploy.tools.healthcheck", *args],
        env=env,
        cwd=manifests.ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    ).returncode


async def test_the_image_health_check_asks_the_service_on_its_configured_port(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    async def ready() -> bool:
        return (await http.get(f"{stack.url('router')}/readyz")).status_code == 200

    await eventually(ready, timeout=30)
    base = {"PATH": "/usr/bin:/bin"}
    port = {"CLOSELOOP_ROUTER_HTTP_PORT": str(stack.ports["router"])}
    assert run_healthcheck("router", env={**base, **port}) == 0
    assert run_healthcheck("--ready", "router", env={**base, **port}) == 0
    nobody = {"CLOSELOOP_ROUTER_HTTP_PORT": str(devstack.free_port())}
    assert run_healthcheck("router", env={**base, **nobody}) == 1


def test_prometheus_config_for_the_test_keeps_the_shipped_jobs() -> None:
    shipped = manifests.load(DEPLOY / "prometheus" / "prometheus.yml")
    ports = {name: 1 for name in SERVICES}
    assert [job["job_name"] for job in prometheus_config(ports)["scrape_configs"]] == [
        job["job_name"] for job in shipped["scrape_configs"]
    ]
