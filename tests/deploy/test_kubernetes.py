"""deploy/k8s: the kustomize base and production overlay, rendered with kubectl's built-in
kustomize and validated against the Kubernetes schemas (kubernetes-validate, offline)."""

from __future__ import annotations

import importlib
import re
from pathlib import PurePosixPath
from typing import Any

import kubernetes_validate
import pytest

from deploy.tools.topics import DEFAULT_FILE, TopicsFile
from shared.config import load_yaml
from shared.contracts import DEFAULT_TAXONOMY_FILE, TAXONOMY_FILE_VARIABLE
from tests.deploy import manifests
from tests.deploy.manifests import DEPLOY, K8S, OVERLAYS, ROOT, SERVICES, Doc

# The oldest Kubernetes the manifests are written for (docs/deployment.md) and the newest
# whose schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
# Topics each consumer reads: its copies beyond their partitions would sit idle.
CONSUMES = {
    "classifier": ["feedback.received"],
    "router": ["feedback.classified", "case.lifecycle", "customer.signals"],
    "followup": ["case.routed"],
    "insights": ["case.routed", "case.lifecycle"],
}
# The services that keep state (or their rate limits) in MongoDB.
DATABASE_USERS = ("intake", "router", "followup", "insights")


@pytest.fixture(scope="module", params=list(OVERLAYS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    return request.param, manifests.render(request.param)


@pytest.fixture(scope="module")
def production() -> list[Doc]:
    return manifests.render("production")


def workloads(docs: list[Doc]) -> dict[str, Doc]:
    return manifests.by_kind(docs, "Deployment")


def test_every_manifest_file_is_a_valid_kubernetes_object_on_its_own() -> None:
    files = [p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"]
    patches = {
        OVERLAYS["production"] / entry["path"]
        for entry in manifests.load(OVERLAYS["production"] / "kustomization.yaml")["patches"]
        if "path" in entry
    }
    checked = 0
    for path in sorted(set(files) - patches):
        for doc in manifests.load_all(path):
            kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)
            checked += 1
    assert checked >= 4 * len(SERVICES) + 2  # four per service, the topic job and the namespace


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_manifests_are_valid_against_the_kubernetes_schemas(
    rendered: tuple[str, list[Doc]], version: str
) -> None:
    _, docs = rendered
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_schemas_reject_a_misspelt_probe(production: list[Doc]) -> None:
    deployment = workloads(production)["intake"]
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["paht"] = probe["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomizations_name_only_files_that_exist() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        spec = manifests.load(kustomization)
        here = kustomization.parent
        paths = [here / r for r in spec.get("resources", [])]
        paths += [here / p["path"] for p in spec.get("patches", []) if "path" in p]
        for generator in spec.get("configMapGenerator", []):
            paths += [here / f.split("=", 1)[-1] for f in generator.get("files", [])]
            paths += [here / e for e in generator.get("envs", [])]
        assert [str(p) for p in paths if not p.exists()] == [], kustomization


def test_each_service_is_a_deployment_with_a_service_an_autoscaler_and_a_disruption_budget(
    rendered: tuple[str, list[Doc]],
) -> None:
    _, docs = rendered
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert sorted(manifests.by_kind(docs, kind)) == sorted(SERVICES), kind
    for name, deployment in workloads(docs).items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        assert manifests.by_kind(docs, "Service")[name]["spec"]["selector"] == selector
        assert manifests.by_kind(docs, "PodDisruptionBudget")[name]["spec"]["selector"] == {
            "matchLabels": selector
        }
        target = manifests.by_kind(docs, "HorizontalPodAutoscaler")[name]["spec"]["scaleTargetRef"]
        assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        # The autoscaler owns the number of copies; a replicas field would fight it.
        assert "replicas" not in deployment["spec"]


def test_each_deployment_runs_its_service_with_probes_resources_and_no_root(
    rendered: tuple[str, list[Doc]],
) -> None:
    _, docs = rendered
    for name, deployment in workloads(docs).items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == [f"services.{name}"]
        assert container["ports"] == [{"name": "http", "containerPort": manifests.PORTS[name]}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys()
        assert "memory" in resources["limits"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        # Consumers finish their batch and leave the group within 40 s of SIGTERM.
        assert pod["terminationGracePeriodSeconds"] >= 45
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(manifests.PORTS[name])


def test_intake_scales_on_cpu_and_consumers_no_further_than_their_partitions(
    rendered: tuple[str, list[Doc]],
) -> None:
    _, docs = rendered
    autoscalers = manifests.by_kind(docs, "HorizontalPodAutoscaler")
    topics = load_yaml(DEFAULT_FILE, TopicsFile).topics
    for name, hpa in autoscalers.items():
        spec = hpa["spec"]
        assert 2 <= spec["minReplicas"] <= spec["maxReplicas"]
        assert [m["resource"]["name"] for m in spec["metrics"]] == ["cpu"]
        if name in CONSUMES:
            partitions = min(topics[topic].partitions for topic in CONSUMES[name])
            assert spec["maxReplicas"] <= partitions, name
            assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300


def test_the_consumers_table_matches_what_each_service_subscribes_to() -> None:
    for name, topics in CONSUMES.items():
        source = (ROOT / "services" / name / "app.py").read_text(encoding="utf-8")
        # Each consume call subscribes to a tuple its handlers module declares.
        declared = re.findall(r"service\.consume\(\s*list\((\w+)\)", source)
        handlers = importlib.import_module(f"services.{name}.handlers")
        subscribed = [topic for tuple_name in declared for topic in getattr(handlers, tuple_name)]
        assert sorted(topics) == sorted(subscribed), name


@pytest.mark.parametrize("overlay", list(OVERLAYS))
@pytest.mark.parametrize("service", SERVICES)
def test_each_container_environment_is_valid_configuration_for_its_service(
    overlay: str, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = manifests.render(overlay)
    (container,) = workloads(docs)[service]["spec"]["template"]["spec"]["containers"]
    env = manifests.container_environment(docs, container)
    assert manifests.unknown_variables(service, env) == []
    settings = manifests.read_settings(
        service, {**manifests.image_environment(), **env}, monkeypatch
    )
    assert settings.kafka_idempotence is True
    assert settings.http_host == "0.0.0.0"
    assert settings.http_port == manifests.PORTS[service]
    if overlay == "production":
        assert settings.kafka_bootstrap == "closeloop-kafka-bootstrap.kafka.svc:9092"


def config_map_files(pod: Doc, container: Doc, path: PurePosixPath) -> list[tuple[str, str]]:
    """(ConfigMap, key) that a file in the container comes from."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    out = []
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        names = (
            [s["configMap"]["name"] for s in volume["projected"]["sources"]]
            if "projected" in volume
            else [volume["configMap"]["name"]]
            if "configMap" in volume
            else []
        )
        if "subPath" in mount and PurePosixPath(mount["mountPath"]) == path:
            out += [(name, mount["subPath"]) for name in names]
        elif "subPath" not in mount and PurePosixPath(mount["mountPath"]) == path.parent:
            out += [(name, path.name) for name in names]
    return out


@pytest.mark.parametrize("service", SERVICES)
def test_each_configuration_file_comes_from_a_config_map_of_the_repository_s_file(
    production: list[Doc], service: str
) -> None:
    pod = workloads(production)[service]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = manifests.container_environment(production, container)
    configmaps = manifests.by_kind(production, "ConfigMap")
    for setting, default in manifests.file_settings(service).items():
        path = PurePosixPath(env[f"{manifests.prefix(service)}{setting.upper()}"])
        # A projected volume merges its ConfigMaps: the file comes from the one with the key.
        contents = [
            configmaps[name]["data"][key]
            for name, key in config_map_files(pod, container, path)
            if key in configmaps[name]["data"]
        ]
        assert contents == [default.read_text(encoding="utf-8")], (service, setting)


def test_followup_reads_the_routing_policy_from_the_router_s_config_map(
    production: list[Doc],
) -> None:
    """One ConfigMap for both: followup times promises and silences in the same team
    calendars the router counts deadlines in, and a change of it rolls both."""
    sources = {}
    for service, variable in (
        ("router", "CLOSELOOP_ROUTER_POLICY_FILE"),
        ("followup", "CLOSELOOP_FOLLOWUP_ROUTING_FILE"),
    ):
        pod = workloads(production)[service]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = manifests.container_environment(production, container)
        configmaps = manifests.by_kind(production, "ConfigMap")
        sources[service] = [
            (name, key)
            for name, key in config_map_files(pod, container, PurePosixPath(env[variable]))
            if key in configmaps[name]["data"]
        ]
    assert sources["followup"] == sources["router"]
    ((name, _),) = sources["router"]
    assert name.startswith("closeloop-routing-")  # kustomize's hash suffix


@pytest.mark.parametrize("service", ["router", "followup", "insights"])
def test_services_reading_root_causes_see_the_classifier_s_taxonomy(
    production: list[Doc], service: str
) -> None:
    pod = workloads(production)[service]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = manifests.container_environment(production, container)
    path = PurePosixPath(env[TAXONOMY_FILE_VARIABLE])
    configmaps = manifests.by_kind(production, "ConfigMap")
    contents = [
        configmaps[name]["data"][key]
        for name, key in config_map_files(pod, container, path)
        if key in configmaps[name]["data"]
    ]
    assert contents == [DEFAULT_TAXONOMY_FILE.read_text(encoding="utf-8")]


def test_the_taxonomy_sits_beside_the_model_artifact_it_names(production: list[Doc]) -> None:
    (container,) = workloads(production)["classifier"]["spec"]["template"]["spec"]["containers"]
    env = manifests.container_environment(production, container)
    default = manifests.file_settings("classifier")["taxonomy_file"]
    in_image = PurePosixPath("/app") / default.relative_to(ROOT).as_posix()
    assert PurePosixPath(env["CLOSELOOP_CLASSIFIER_TAXONOMY_FILE"]) == in_image


def test_secrets_are_referenced_never_committed(production: list[Doc]) -> None:
    assert manifests.by_kind(production, "Secret") == {}
    referenced = set()
    for _, container in manifests.containers(production):
        referenced |= {
            s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s
        }
        referenced |= {
            item["valueFrom"]["secretKeyRef"]["name"]
            for item in container.get("env", [])
            if "secretKeyRef" in item.get("valueFrom", {})
        }
    assert referenced == set(manifests.SECRET_EXAMPLES)
    deployment_doc = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    for name in referenced:
        assert f"create secret generic {name}" in deployment_doc, name


@pytest.mark.parametrize("service", DATABASE_USERS)
def test_limits_and_seen_signatures_are_kept_in_the_shared_database(
    production: list[Doc], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every copy (and a restarted one) counts rate limits and failed attempts, and knows
    the signatures already seen, in the replica set of the closeloop-mongodb Secret."""
    (container,) = workloads(production)[service]["spec"]["template"]["spec"]["containers"]
    env = manifests.container_environment(production, container)
    settings = manifests.read_settings(
        service, {**manifests.image_environment(), **env}, monkeypatch
    )
    assert settings.rate_limit_storage is None  # the service's own MongoDB
    assert "@mongo-0.mongo.mongodb.svc:27017," in settings.mongo_url  # the Secret's url
    assert settings.environment == "production"


def test_the_topic_job_reads_the_topics_file_from_a_config_map(production: list[Doc]) -> None:
    (job,) = manifests.by_kind(production, "Job").values()
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["deploy.tools.topics"]
    env = manifests.container_environment(production, container)
    configmaps = manifests.by_kind(production, "ConfigMap")
    volume = job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
    assert env["CLOSELOOP_TOPICS_FILE"] == "/etc/closeloop/topics.yaml"
    assert configmaps[volume]["data"]["topics.yaml"] == DEFAULT_FILE.read_text(encoding="utf-8")
    assert job["spec"]["ttlSecondsAfterFinished"] > 0


def test_production_keeps_three_copies_spread_over_zones_in_its_own_namespace(
    production: list[Doc],
) -> None:
    assert {
        doc["metadata"].get("namespace") for doc in production if doc["kind"] != "Namespace"
    } == {"closeloop"}
    namespace = manifests.by_kind(production, "Namespace")["closeloop"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, hpa in manifests.by_kind(production, "HorizontalPodAutoscaler").items():
        assert hpa["spec"]["minReplicas"] >= 3, name
    for name, deployment in workloads(production).items():
        keys = {
            c["topologyKey"]
            for c in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        }
        assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}, name
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"].endswith(":0.1.0")


def test_monitoring_gets_the_rules_and_dashboards_as_config_maps(production: list[Doc]) -> None:
    configmaps = manifests.by_kind(production, "ConfigMap")
    rules = configmaps["closeloop-prometheus-rules"]["data"]["closeloop.yml"]
    assert rules == (DEPLOY / "prometheus" / "rules" / "closeloop.yml").read_text(encoding="utf-8")
    dashboards = configmaps["closeloop-grafana-dashboards"]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert sorted(dashboards["data"]) == sorted(manifests.dashboards())


def test_the_kubernetes_scrape_config_makes_each_pod_a_target_of_its_service_job(
    production: list[Doc],
) -> None:
    config = manifests.load(DEPLOY / "prometheus" / "kubernetes.yml")
    (job,) = config["scrape_configs"]
    relabel = job["relabel_configs"]
    keep = {r["source_labels"][0]: r["regex"] for r in relabel if r.get("action") == "keep"}
    (naming,) = [r for r in relabel if r.get("target_label") == "job"]
    for name, deployment in workloads(production).items():
        template = deployment["spec"]["template"]
        meta: dict[str, Any] = {
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape": template["metadata"][
                "annotations"
            ]["prometheus.io/scrape"],
            "__meta_kubernetes_pod_label_app_kubernetes_io_part_of": template["metadata"]["labels"][
                "app.kubernetes.io/part-of"
            ],
            "__meta_kubernetes_pod_container_port_name": template["spec"]["containers"][0]["ports"][
                0
            ]["name"],
        }
        for label, regex in keep.items():
            assert re.fullmatch(regex, meta[label]), (name, label)
        source = template["metadata"]["labels"]["app.kubernetes.io/name"]
        assert naming["replacement"].replace("$1", source) == f"closeloop-{name}"
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == ["closeloop"]


def test_every_pod_meets_the_restricted_pod_security_standard(production: list[Doc]) -> None:
    pods = 0
    for workload, container in manifests.containers(production):
        pod = workload["spec"]["template"]["spec"]
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}, name
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert not any("hostPath" in volume for volume in pod.get("volumes", [])), name
        pods += 1
    assert pods == len(SERVICES) + 1  # and the topic job


# --- network policies: who may reach which port ------------------------------------------


def _selects(selector: Doc, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions In/NotIn/Exists)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
    return True


def _peer_matches(
    peer: Doc, same_namespace: bool, namespace: dict[str, str], pod: dict[str, str]
) -> bool:
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], namespace):
            return False
    elif not same_namespace:
        return False  # a podSelector alone means pods of the policy's own namespace
    return "podSelector" not in peer or _selects(peer["podSelector"], pod)


def reachable(
    docs: list[Doc],
    service: str,
    *,
    namespace: dict[str, str] | None = None,
    pod: dict[str, str] | None = None,
    same_namespace: bool = False,
) -> bool:
    """Whether a pod with labels ``pod`` in a namespace with labels ``namespace`` may open
    a connection to ``service``'s HTTP port, by the rendered NetworkPolicies."""
    target = workloads(docs)[service]["spec"]["template"]["metadata"]["labels"]
    policies = [
        p for p in manifests.by_kind(docs, "NetworkPolicy").values()
        if "Ingress" in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], target)
    ]  # fmt: skip
    if not policies:
        return True  # not isolated
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            ports = {port["port"] for port in rule.get("ports", [{"port": "http"}])}
            peers = rule.get("from")
            if "http" in ports and (
                peers is None
                or any(_peer_matches(p, same_namespace, namespace or {}, pod or {}) for p in peers)
            ):
                return True
    return False


def test_every_pod_of_closeloop_is_isolated_by_a_default_deny(production: list[Doc]) -> None:
    deny = manifests.by_kind(production, "NetworkPolicy")["closeloop-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    for doc, _ in manifests.containers(production):
        assert _selects(deny["podSelector"], doc["spec"]["template"]["metadata"]["labels"])


def test_strangers_reach_intake_and_followup_only(production: list[Doc]) -> None:
    """Integrations post to intake and customers open followup's survey page from
    anywhere; the router's, insights' and the classifier's ports are closed to them, even
    from a neighbour pod in closeloop's own namespace."""
    reach = {s: reachable(production, s, namespace={"name": "web"}) for s in SERVICES}
    assert reach == {
        "intake": True,
        "classifier": False,
        "router": False,
        "followup": True,
        "insights": False,
    }
    assert not reachable(production, "router", same_namespace=True)
    assert not reachable(production, "insights", same_namespace=True)


def test_the_router_takes_only_its_labelled_clients(production: list[Doc]) -> None:
    client = {"closeloop.dev/router-client": "true"}
    assert reachable(production, "router", namespace={"name": "tools"}, pod=client)
    assert not reachable(production, "classifier", namespace={"name": "tools"}, pod=client)
    assert not reachable(production, "insights", namespace={"name": "tools"}, pod=client)


def test_insights_takes_only_its_labelled_clients(production: list[Doc]) -> None:
    """Dashboards and mailers that read the reports, in any namespace (and closeloop's
    own); a client of insights is no client of the router or the classifier."""
    client = {"closeloop.dev/insights-client": "true"}
    assert reachable(production, "insights", namespace={"name": "dashboards"}, pod=client)
    assert reachable(production, "insights", same_namespace=True, pod=client)
    assert not reachable(production, "router", namespace={"name": "dashboards"}, pod=client)
    assert not reachable(production, "classifier", namespace={"name": "dashboards"}, pod=client)
    not_client = {"closeloop.dev/insights-client": "false"}
    assert not reachable(production, "insights", namespace={"name": "dashboards"}, pod=not_client)


def test_prometheus_in_the_monitoring_namespace_reaches_every_service(
    production: list[Doc],
) -> None:
    monitoring = {"closeloop.dev/monitoring": "true"}
    assert {s: reachable(production, s, namespace=monitoring) for s in SERVICES} == {
        s: True for s in SERVICES
    }
    assert "insights" in SERVICES
    assert not reachable(production, "insights", namespace={"closeloop.dev/monitoring": "no"})
