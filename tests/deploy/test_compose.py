"""deploy/compose.yaml: valid against the Compose specification, and a stack that works.

No container engine runs here, so the file is checked the way `docker compose` reads it:
the schema from the Compose specification (vendored by check-jsonschema, offline), and
what the schema cannot know (services' settings, mounts, start order) against the
repository.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import manifests
from tests.deploy.manifests import DEPLOY, SERVICES

# What an operator sets before `docker compose up` (docs/deployment.md).
REQUIRED_VARIABLES = {"GRAFANA_ADMIN_PASSWORD": "a-password"}
BROKERS = ("kafka-1", "kafka-2", "kafka-3")
MONGO_MEMBERS = ("mongo-1", "mongo-2", "mongo-3")
# The services that keep state (or their rate limits) in the replica set.
DATABASE_USERS = ("intake", "router", "followup", "insights")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return manifests.compose()


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with the Compose specification's schema it ships (offline)."""
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_compose_file_validates_against_the_compose_specification() -> None:
    result = check_compose(DEPLOY / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_specification_schema_rejects_a_misspelt_service_key(
    spec: dict[str, Any], tmp_path: Path
) -> None:
    broken = copy.deepcopy(spec)
    broken["services"]["intake"]["heathcheck"] = broken["services"]["intake"].pop("healthcheck")
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = check_compose(path)
    assert result.returncode == 1 and "heathcheck" in result.stdout


def test_kafka_runs_three_kraft_nodes_with_replication_3_and_min_insync_replicas_2(
    spec: dict[str, Any],
) -> None:
    voters = set()
    for node_id, name in enumerate(BROKERS, start=1):
        env = spec["services"][name]["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_NODE_ID"] == node_id
        host_port = 29091 + node_id
        assert env["KAFKA_ADVERTISED_LISTENERS"] == (
            f"PLAINTEXT://{name}:9092,HOST://127.0.0.1:{host_port}"
        )
        # Operators' tools reach each broker from the host, and only from the host.
        assert spec["services"][name]["ports"] == [f"127.0.0.1:{host_port}:29092"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert "zookeeper" not in json.dumps(env).lower()
        voters.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        assert any(v.endswith(":/var/lib/kafka/data") for v in spec["services"][name]["volumes"])
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}


def test_topics_are_created_by_a_one_shot_job_before_any_service_starts(
    spec: dict[str, Any],
) -> None:
    job = spec["services"]["kafka-topics"]
    assert job["command"] == ["deploy.tools.topics"]
    assert job["restart"] == "no"
    env = job["environment"]
    assert env["CLOSELOOP_TOPICS_KAFKA_BOOTSTRAP"].split(",") == [f"{b}:9092" for b in BROKERS]
    mounts = manifests.bind_mounts(job)
    assert mounts[env["CLOSELOOP_TOPICS_FILE"]] == DEPLOY / "kafka" / "topics.yaml"
    assert {b: {"condition": "service_healthy"} for b in BROKERS} == job["depends_on"]
    for name in SERVICES:
        depends = spec["services"][name]["depends_on"]
        assert depends["kafka-topics"] == {"condition": "service_completed_successfully"}
        assert depends["mongo-init"] == {"condition": "service_completed_successfully"}


def test_mongodb_is_a_three_member_replica_set_that_every_service_but_the_classifier_uses(
    spec: dict[str, Any],
) -> None:
    for name in MONGO_MEMBERS:
        assert spec["services"][name]["command"][:3] == ["mongod", "--replSet", "rs0"]
    script = (DEPLOY / "mongodb" / "init-replica-set.js").read_text(encoding="utf-8")
    assert re.findall(r'host: "([\w-]+):27017"', script) == list(MONGO_MEMBERS)
    init = spec["services"]["mongo-init"]
    assert set(init["depends_on"]) == set(MONGO_MEMBERS)
    for service in DATABASE_USERS:
        url = spec["services"][service]["environment"][f"CLOSELOOP_{service.upper()}_MONGO_URL"]
        assert url.startswith("mongodb://" + ",".join(f"{m}:27017" for m in MONGO_MEMBERS) + "/")
        assert "replicaSet=rs0" in url and "w=majority" in url


def test_each_service_runs_its_module_from_the_one_image_with_the_idempotent_producer(
    spec: dict[str, Any],
) -> None:
    images = set()
    for name in SERVICES:
        service = spec["services"][name]
        assert service["command"] == [f"services.{name}"]
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        env = service["environment"]
        assert env[f"{manifests.prefix(name)}KAFKA_IDEMPOTENCE"] == "true"
        assert env[f"{manifests.prefix(name)}KAFKA_BOOTSTRAP"].split(",") == [
            f"{b}:9092" for b in BROKERS
        ]
        images.add(service["image"])
        assert service["healthcheck"]["test"][:4] == [
            "CMD",
            "python",
            "-m",
            "deploy.tools.healthcheck",
        ]
    assert len(images) == 1


@pytest.mark.parametrize("service", SERVICES)
def test_the_environment_of_each_service_is_valid_configuration(
    spec: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = manifests.compose_environment(spec["services"][service], REQUIRED_VARIABLES)
    assert manifests.unknown_variables(service, env) == []
    image_env = manifests.image_environment()
    settings = manifests.read_settings(service, {**image_env, **env}, monkeypatch)
    assert settings.kafka_idempotence is True
    assert settings.http_host == "0.0.0.0"
    published = [p.rsplit(":", 1)[1] for p in spec["services"][service].get("ports", [])]
    assert published in ([], [str(settings.http_port)])
    assert settings.http_port == manifests.PORTS[service]


@pytest.mark.parametrize("service", SERVICES)
def test_each_configuration_file_a_service_reads_is_mounted_from_the_repository(
    spec: dict[str, Any], service: str
) -> None:
    env = manifests.compose_environment(spec["services"][service], REQUIRED_VARIABLES)
    mounts = manifests.bind_mounts(spec["services"][service])
    for setting, default in manifests.file_settings(service).items():
        variable = f"{manifests.prefix(service)}{setting.upper()}"
        assert variable in env, f"{service} reads {setting} but compose does not set {variable}"
        assert mounts.get(env[variable]) == default.resolve()
    if service == "classifier":
        # Where the image has it: the taxonomy names its model relative to its folder.
        taxonomy = env["CLOSELOOP_CLASSIFIER_TAXONOMY_FILE"]
        assert taxonomy == "/app/" + str(
            manifests.file_settings(service)["taxonomy_file"].relative_to(manifests.ROOT)
        )


def test_followup_reads_the_router_s_routing_file_for_the_team_calendars(
    spec: dict[str, Any],
) -> None:
    """One file for both: the calendars followup times promises and silences by are the
    ones the router counts SLA deadlines in."""
    files = {}
    for service, variable in (
        ("router", "CLOSELOOP_ROUTER_POLICY_FILE"),
        ("followup", "CLOSELOOP_FOLLOWUP_ROUTING_FILE"),
    ):
        env = manifests.compose_environment(spec["services"][service], REQUIRED_VARIABLES)
        files[service] = manifests.bind_mounts(spec["services"][service])[env[variable]]
    assert files["followup"] == files["router"] == DEPLOY.parent / "services/router/routing.yaml"


def test_every_file_the_stack_mounts_exists(spec: dict[str, Any]) -> None:
    missing = [
        f"{name}: {path}"
        for name, service in spec["services"].items()
        for path in manifests.bind_mounts(service).values()
        if not path.exists()
    ]
    assert missing == []


def test_secrets_come_from_uncommitted_env_files_with_committed_examples(
    spec: dict[str, Any],
) -> None:
    ignored = (DEPLOY / "secrets" / ".gitignore").read_text(encoding="utf-8").split()
    assert "*.env" in ignored
    for name, service in spec["services"].items():
        for entry in service.get("env_file", []):
            path = DEPLOY / entry["path"]
            assert path.parent == DEPLOY / "secrets", name
            assert path.with_name(path.name + ".example").exists(), name
    # Required: none of them starts without its API keys.
    for name in ("router", "followup", "insights"):
        assert spec["services"][name]["env_file"] == [{"path": f"./secrets/{name}.env"}]


@pytest.mark.parametrize("service", DATABASE_USERS)
def test_limits_and_seen_signatures_are_kept_where_every_copy_and_restart_sees_them(
    spec: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rate limits, failed attempts and (intake) seen signatures: in the replica set,
    not in a copy's memory, so a restart or another copy does not forget them."""
    env = manifests.compose_environment(spec["services"][service], REQUIRED_VARIABLES)
    settings = manifests.read_settings(
        service, {**manifests.image_environment(), **env}, monkeypatch
    )
    assert settings.rate_limit_storage is None  # the service's own MongoDB
    assert settings.mongo_url.startswith("mongodb://mongo-1:27017,")
    assert settings.environment == "production"


def test_prometheus_and_grafana_load_the_shipped_rules_config_and_dashboards(
    spec: dict[str, Any],
) -> None:
    prometheus = manifests.bind_mounts(spec["services"]["prometheus"])
    assert prometheus["/etc/prometheus/prometheus.yml"] == DEPLOY / "prometheus" / "compose.yml"
    assert prometheus["/etc/prometheus/rules"] == DEPLOY / "prometheus" / "rules"
    grafana = manifests.bind_mounts(spec["services"]["grafana"])
    provider = manifests.load(
        grafana["/etc/grafana/provisioning"] / "dashboards" / "closeloop.yaml"
    )
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert grafana[dashboards_path] == DEPLOY / "grafana" / "dashboards"
    datasource = manifests.load(
        grafana["/etc/grafana/provisioning"] / "datasources" / "prometheus.yaml"
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    home = spec["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (grafana[dashboards_path] / Path(home).name).exists()
    with pytest.raises(KeyError, match="GRAFANA_ADMIN_PASSWORD"):
        manifests.compose_environment(spec["services"]["grafana"], {})


def test_the_compose_scrape_config_finds_every_copy_of_each_service(
    spec: dict[str, Any],
) -> None:
    config = manifests.load(DEPLOY / "prometheus" / "compose.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in SERVICES:
        (sd,) = jobs[f"closeloop-{name}"]["dns_sd_configs"]
        assert sd["names"] == [name] and name in spec["services"]
        assert sd["port"] == manifests.PORTS[name]


def test_every_published_port_is_bound_to_the_host_s_loopback_by_default(
    spec: dict[str, Any],
) -> None:
    """/metrics and /docs are on every service's port: nothing is published on the
    host's other interfaces unless the operator names an address to publish intake and
    followup on (for the TLS proxy in front, docs/deployment.md)."""
    for name, service in spec["services"].items():
        for port in service.get("ports", []):
            bound = manifests.interpolate(str(port), {})
            assert bound.startswith("127.0.0.1:"), (name, port)
    published = {
        name: manifests.interpolate(str(port), {"CLOSELOOP_PUBLISH_ADDRESS": "10.0.0.5"})
        for name, service in spec["services"].items()
        for port in service.get("ports", [])
        if not str(port).startswith("127.0.0.1:")
    }
    assert published == {"intake": "10.0.0.5:8000:8000", "followup": "10.0.0.5:8003:8003"}
    # Internal services: reached on the compose network only; insights' report page
    # on the host's loopback only, whatever address intake and followup are published on.
    for name in ("classifier", "router"):
        assert "ports" not in spec["services"][name], name
    (report_page,) = spec["services"]["insights"]["ports"]
    assert manifests.interpolate(report_page, {}) == "127.0.0.1:8004:8004"
