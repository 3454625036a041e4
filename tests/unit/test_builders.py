"""The objects the operator builds for an InferenceEndpoint, from the pure builders."""

from __future__ import annotations

import json
import pytest
import yaml

from catalog_cases import manifest as case_manifest
from kubeinfer_operator.builders import (
    CONFIG_HASH_ANNOTATION, UID_PLACEHOLDER, desired_state, endpoint_url, workload_name,
)
from kubeinfer.config import OperatorSettings
from kubeinfer.deployment_policy import PolicyViolation
from kubeinfer.catalog import BUILTIN_MODELS, SERVICES, from_manifest
from kubeinfer.errors import ElasticsearchError
from kubeinfer.secrets import secret_env_var

SETTINGS = OperatorSettings.from_env({})
# Overrides the default deployment policy refuses (another image, other annotations).
PERMISSIVE = OperatorSettings.from_env({"KUBEINFER_DEPLOYMENT_POLICY": json.dumps({
    "allowedImagePrefixes": ["reg/"], "allowedAnnotations": ["team", "kubeinfer.io/"]})})
CPU = OperatorSettings.from_env({"KUBEINFER_GPUS_PER_ENDPOINT": "0", "KUBEINFER_MODEL_CACHE_PVC": "models"})


def manifest(spec: dict, name: str = "ep", namespace: str = "ml", uid: str | None = "uid-1") -> dict:
    meta = {"name": name, "namespace": namespace}
    if uid:
        meta["uid"] = uid
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "metadata": meta, "spec": spec}


def local(**settings) -> dict:
    return manifest({"taskType": "text_embedding", "service": "elasticsearch",
                     "serviceSettings": {"model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1, **settings}})


def minimal_spec(service: str, task: str) -> dict:
    """The documented minimal settings of the pair, secrets as references."""
    return case_manifest(service, task)["spec"]


PAIRS = [(name, task.value) for name in sorted(SERVICES) for task in SERVICES[name].task_types]
EXTERNAL = [(n, t) for n, t in PAIRS if SERVICES[n].external]
LOCAL = [(n, t) for n, t in PAIRS if not SERVICES[n].external]


def container(state) -> dict:
    return state.deployment["spec"]["template"]["spec"]["containers"][0]


def pod(state) -> dict:
    return state.deployment["spec"]["template"]["spec"]


@pytest.mark.parametrize("service, task", EXTERNAL)
def test_external_services_get_a_small_proxy_with_secrets_from_secret_refs(service, task):
    state = desired_state(manifest(minimal_spec(service, task)), SETTINGS)
    c = container(state)
    assert c["image"] == SETTINGS.proxy_image
    assert c["resources"]["requests"] == {"cpu": "50m", "memory": "128Mi"}
    assert not any("gpu" in k for part in c["resources"].values() for k in part)
    assert "initContainers" not in pod(state) and state.hpa is None
    assert state.deployment["metadata"]["labels"]["app.kubernetes.io/component"] == "provider-proxy"
    secrets = SERVICES[service].secret_fields(task)
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
    config = from_manifest(manifest(minimal_spec(service, task)))
    assert refs == {secret_env_var(f): {"name": r.secret_key_ref.name, "key": r.secret_key_ref.key}
                    for f, r in config.secret_refs().items()}
    assert {name.partition(".")[0] for name in config.secret_refs()} <= set(secrets)
    assert all("value" not in e for e in c["env"] if e["name"].startswith("KUBEINFER_SECRET_"))


@pytest.mark.parametrize("service, task", LOCAL)
def test_local_models_get_the_gpu_server_with_a_model_download(service, task):
    settings = {"model_id": ".elser_model_2" if service == "elser" else "BAAI/bge-small-en-v1.5", "num_allocations": 1, "num_threads": 1}
    state = desired_state(manifest({"taskType": task, "service": service, "serviceSettings": settings}), SETTINGS)
    c = container(state)
    assert c["image"] == SETTINGS.server_image
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert c["resources"]["requests"]["cpu"] == "1"
    init = pod(state)["initContainers"][0]
    expected = BUILTIN_MODELS[".elser_model_2"] if service == "elser" else "BAAI/bge-small-en-v1.5"
    assert init["command"][-1] == expected and "snapshot_download" in init["command"][2]
    assert {"name": "models", "mountPath": "/models"} in init["volumeMounts"]
    models = next(v for v in pod(state)["volumes"] if v["name"] == "models")
    assert models == {"name": "models", "emptyDir": {"sizeLimit": "10Gi"}}
    assert state.deployment["metadata"]["labels"]["app.kubernetes.io/component"] == "model-server"


def test_builtin_aliases_follow_the_operator_settings():
    settings = OperatorSettings.from_env({"KUBEINFER_MODEL_ALIASES": '{".multilingual-e5-small": "org/e5-mirror"}'})
    state = desired_state(local(), settings)
    assert pod(state)["initContainers"][0]["command"][-1] == "org/e5-mirror"
    aliases = next(e["value"] for e in container(state)["env"] if e["name"] == "KUBEINFER_MODEL_ALIASES")
    assert json.loads(aliases)[".multilingual-e5-small"] == "org/e5-mirror"


def test_cpu_mode_threads_allocations_and_a_model_cache_claim():
    state = desired_state(local(num_threads=4, num_allocations=3), CPU)
    c = container(state)
    assert c["image"] == CPU.server_cpu_image
    assert c["resources"] == {"requests": {"cpu": "4", "memory": "2Gi"}}
    assert {"name": "OMP_NUM_THREADS", "value": "4"} in c["env"]
    assert state.deployment["spec"]["replicas"] == 3
    assert "tolerations" not in pod(state)
    models = next(v for v in pod(state)["volumes"] if v["name"] == "models")
    assert models["persistentVolumeClaim"] == {"claimName": "models"}
    # The CPU image has no torch: the GPU image exports the model into the cache first.
    download, export = pod(state)["initContainers"]
    assert download["name"] == "download-model" and export["name"] == "export-model"
    assert export["image"] == CPU.server_image
    assert export["command"] == ["kubeinfer", "export", BUILTIN_MODELS[".multilingual-e5-small"],
                                 "--task-type", "text_embedding", "--cache-dir", "/models"]


def test_a_cpu_image_and_text_model_runs_on_the_torch_image_without_an_export():
    spec = local(model_id="openai/clip-vit-base-patch32")["spec"] | {"taskType": "embedding"}
    state = desired_state(manifest(spec), CPU)
    assert container(state)["image"] == CPU.server_image
    assert [c["name"] for c in pod(state)["initContainers"]] == ["download-model"]


def test_local_paths_are_not_downloaded():
    state = desired_state(local(model_id="/models/my-model"), SETTINGS)
    assert "initContainers" not in pod(state)


def test_adaptive_allocations_become_an_hpa_on_the_request_metric_that_owns_replicas():
    state = desired_state(local(num_allocations=2, adaptive_allocations={
        "enabled": True, "min_number_of_allocations": 2, "max_number_of_allocations": 6}), SETTINGS,
        autoscaler="hpa")
    assert state.scaled_object is None
    assert state.hpa["spec"]["minReplicas"] == 2 and state.hpa["spec"]["maxReplicas"] == 6
    assert state.hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ep"}
    assert state.hpa["spec"]["metrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": "kubeinfer_requests_in_flight"}, "target": {"type": "AverageValue", "averageValue": "8"}}}]
    assert "replicas" not in state.deployment["spec"]
    # an HPA cannot go to zero: at least one replica
    zero = desired_state(local(adaptive_allocations={"enabled": True, "min_number_of_allocations": 0}), SETTINGS,
                         autoscaler="hpa")
    assert zero.hpa["spec"]["minReplicas"] == 1 and zero.hpa["spec"]["maxReplicas"] >= 1
    assert zero.deployment["metadata"]["annotations"] == {
        "kubeinfer.io/autoscaler": "hpa", "kubeinfer.io/min-replicas": "0"}
    assert desired_state(local(adaptive_allocations={"enabled": False}), SETTINGS, autoscaler="hpa").hpa is None


def test_adaptive_allocations_with_min_zero_become_a_keda_scaled_object_that_activates_from_zero():
    settings = OperatorSettings.from_env({"KUBEINFER_SCALE_TO_ZERO_AFTER": "300",
                                          "KUBEINFER_PROMETHEUS_ADDRESS": "http://prom.mon:9090"})
    state = desired_state(local(adaptive_allocations={"enabled": True, "max_number_of_allocations": 4}), settings)
    assert state.hpa is None and state.objects()[-1] is state.scaled_object
    scaled = state.scaled_object
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    assert scaled["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ep"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["cooldownPeriod"]) == (0, 4, 300)
    [trigger] = spec["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["serverAddress"] == "http://prom.mon:9090"
    assert trigger["metadata"]["activationThreshold"] == "0" and trigger["metadata"]["threshold"] == "8"
    query = trigger["metadata"]["query"]
    assert 'kubeinfer_requests_in_flight{namespace="ml",inference_id="ep"}' in query
    assert 'kubeinfer_gateway_requests_held{endpoint_namespace="ml",inference_id="ep"}' in query
    assert "replicas" not in state.deployment["spec"]
    assert state.deployment["metadata"]["annotations"]["kubeinfer.io/autoscaler"] == "keda"
    # a given minimum is kept, and the operator setting forces an HPA
    one = desired_state(local(adaptive_allocations={"enabled": True, "min_number_of_allocations": 1}), settings)
    assert one.scaled_object["spec"]["minReplicaCount"] == 1
    assert one.deployment["metadata"]["annotations"]["kubeinfer.io/min-replicas"] == "1"
    forced = OperatorSettings.from_env({"KUBEINFER_AUTOSCALER": "HPA"})
    assert desired_state(local(adaptive_allocations={"enabled": True}), forced).scaled_object is None


def test_fixed_replicas_win_over_adaptive_allocations():
    state = desired_state(manifest({"taskType": "text_embedding", "service": "elasticsearch", "serviceSettings": {
        "model_id": ".multilingual-e5-small", "num_threads": 1, "adaptive_allocations": {"enabled": True}},
        "deployment": {"replicas": 0}}), SETTINGS)
    assert state.hpa is None and state.scaled_object is None and state.deployment["spec"]["replicas"] == 0


def test_objects_are_labelled_owned_and_wired_together():
    state = desired_state(local(), SETTINGS)
    for obj in state.objects():
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "kubeinfer"
        assert labels["app.kubernetes.io/instance"] == "ep"
        assert labels["app.kubernetes.io/managed-by"] == "kubeinfer-operator"
        assert obj["metadata"]["ownerReferences"] == [{
            "apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "name": "ep", "uid": "uid-1",
            "controller": True, "blockOwnerDeletion": True}]
        assert obj["metadata"]["namespace"] == "ml"
    svc = state.service["spec"]
    assert svc["type"] == "ClusterIP" and svc["ports"] == [{"name": "http", "port": 80, "targetPort": "http",
                                                            "protocol": "TCP"}]
    assert svc["selector"] == state.deployment["spec"]["selector"]["matchLabels"]
    assert svc["selector"].items() <= state.deployment["spec"]["template"]["metadata"]["labels"].items()
    endpoint = yaml.safe_load(state.configmap["data"]["endpoint.yaml"])
    assert endpoint["spec"]["serviceSettings"]["model_id"] == ".multilingual-e5-small"
    assert from_manifest(endpoint).inference_id == "ep"
    assert container(state)["args"] == ["serve", "--config", "/etc/kubeinfer/endpoint.yaml", "--port", "8080",
                                        "--cache-dir", "/models"]
    assert endpoint_url("ep", "ml", state.config, "cluster.local") == \
        "http://ep.ml.svc.cluster.local/_inference/text_embedding/ep"


def test_pods_are_locked_down_and_probed():
    state = desired_state(local(), SETTINGS)
    p, c = pod(state), container(state)
    assert p["securityContext"]["runAsNonRoot"] is True
    assert p["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert p["automountServiceAccountToken"] is False
    for ctr in [c, *p["initContainers"]]:
        sc = ctr["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert ctr["resources"]["requests"]
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_overrides_are_applied_last():
    cr = local(num_allocations=2)
    cr["spec"]["deployment"] = {
        "replicas": 5, "image": "reg/custom:2", "resources": {"requests": {"cpu": "8"}, "limits": {"memory": "16Gi"}},
        "nodeSelector": {"pool": "gpu"}, "tolerations": [{"key": "dedicated", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {}},
        "env": [{"name": "OMP_NUM_THREADS", "value": "16"}, {"name": "X", "value": "1"}],
        "annotations": {"team": "search", CONFIG_HASH_ANNOTATION: "forged"},
    }
    state = desired_state(cr, PERMISSIVE)
    c, p = container(state), pod(state)
    assert state.deployment["spec"]["replicas"] == 5
    assert c["image"] == "reg/custom:2" and p["initContainers"][0]["image"] == "reg/custom:2"
    assert c["resources"]["requests"]["cpu"] == "8" and c["resources"]["limits"]["memory"] == "16Gi"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert p["nodeSelector"] == {"pool": "gpu"} and p["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert p["affinity"] == {"nodeAffinity": {}}
    envs = {e["name"]: e.get("value") for e in c["env"]}
    assert envs["OMP_NUM_THREADS"] == "16" and envs["X"] == "1"
    annotations = state.deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["team"] == "search" and annotations[CONFIG_HASH_ANNOTATION] != "forged"


def test_no_object_is_built_for_overrides_the_deployment_policy_refuses():
    cr = local()
    cr["spec"]["deployment"] = {"image": "docker.io/attacker/miner:latest", "tolerations": [{"operator": "Exists"}]}
    with pytest.raises(PolicyViolation) as refused:
        desired_state(cr, SETTINGS)
    assert [v.path for v in refused.value.violations] == ["spec.deployment.image", "spec.deployment.tolerations[0]"]
    cr["spec"]["deployment"] = {"image": SETTINGS.server_cpu_image, "tolerations": [{"key": "pool", "operator": "Exists"}]}
    assert container(desired_state(cr, SETTINGS))["image"] == SETTINGS.server_cpu_image


def test_config_and_secret_versions_roll_the_pods():
    spec = {"taskType": "text_embedding", "service": "openai",
            "serviceSettings": {"model_id": "text-embedding-3-small",
                                "api_key": {"secretKeyRef": {"name": "openai", "key": "api_key"}}}}
    def pod_hash(cr, versions):
        return desired_state(cr, SETTINGS, secret_versions=versions).deployment["spec"]["template"]["metadata"][
            "annotations"][CONFIG_HASH_ANNOTATION]
    base = pod_hash(manifest(spec), {"openai": "10"})
    assert pod_hash(manifest(spec), {"openai": "10"}) == base  # stable
    assert pod_hash(manifest(spec), {"openai": "11"}) != base  # the Secret changed
    changed = {**spec, "serviceSettings": {**spec["serviceSettings"], "dimensions": 256}}
    assert pod_hash(manifest(changed), {"openai": "10"}) != base  # the config changed
    # labels or overrides of replicas do not change the configuration
    scaled = {**spec, "deployment": {"replicas": 3}}
    assert pod_hash(manifest(scaled), {"openai": "10"}) == base


@pytest.mark.parametrize("spec, reason", [
    ({"taskType": "text_embedding", "service": "elasticsearch", "serviceSettings": {}},
     "does not contain the required setting [model_id]"),
    ({"taskType": "rerank", "service": "openai", "serviceSettings": {}},
     "The [openai] service does not support task type [rerank]"),
    ({"taskType": "text_embedding", "service": "elasticsearch", "serviceSettings": {"model_id": "m", "bogus": 1}},
     "unknown to the [elasticsearch] service"),
    ({"taskType": "text_embedding", "service": "elasticsearch", "serviceSettings": {"model_id": "m", "num_allocations": 1, "num_threads": 1},
      "deployment": {"replicas": -1}}, "[spec.deployment.replicas]"),
])
def test_invalid_specs_raise_the_catalogs_error(spec, reason):
    with pytest.raises(ElasticsearchError) as err:
        desired_state(manifest(spec), SETTINGS)
    assert reason in err.value.reason


def test_a_plain_secret_in_a_cr_is_refused_without_repeating_it():
    spec = {"taskType": "completion", "service": "openai",
            "serviceSettings": {"model_id": "gpt-4o", "api_key": "sk-plain-text"}}
    with pytest.raises(ElasticsearchError) as err:
        desired_state(manifest(spec), SETTINGS)
    assert "secretKeyRef" in err.value.reason and "sk-plain-text" not in str(err.value.to_body())


def test_names_that_are_not_dns_labels_get_a_stable_short_name():
    assert workload_name("e5") == "e5"
    odd = workload_name("my.model_v2")
    assert odd != "my.model_v2" and odd == workload_name("my.model_v2")
    long = workload_name("a" * 200)
    assert len(long) <= 63 and long[0].isalpha()
    state = desired_state(local(), SETTINGS, uid=None)
    assert state.configmap["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    no_uid = desired_state(manifest(local()["spec"], uid=None), SETTINGS)
    assert no_uid.service["metadata"]["ownerReferences"][0]["uid"] == UID_PLACEHOLDER


def test_runtime_and_quantization_become_the_servers_settings():
    cr = local()
    cr["spec"]["deployment"] = {"runtime": "onnx", "quantization": "int8"}
    envs = {e["name"]: e.get("value") for e in container(desired_state(cr, SETTINGS))["env"]}
    assert envs["KUBEINFER_RUNTIME"] == "onnx" and envs["KUBEINFER_QUANTIZATION"] == "int8"
    plain = {e["name"] for e in container(desired_state(local(), SETTINGS))["env"]}
    assert not plain & {"KUBEINFER_RUNTIME", "KUBEINFER_QUANTIZATION"}  # the server's own default: auto


@pytest.mark.parametrize("overrides, reason", [
    ({"runtime": "tensorrt"}, "[spec.deployment.runtime] must be one of ['auto', 'torch', 'onnx']"),
    ({"quantization": "int4"}, "[spec.deployment.quantization] must be one of ['none', 'int8']"),
    ({"runtime": "torch", "quantization": "int8"}, "[spec.deployment.runtime] must be auto or onnx, not torch"),
])
def test_an_engine_the_server_cannot_run_is_an_invalid_spec(overrides, reason):
    cr = local()
    cr["spec"]["deployment"] = overrides
    with pytest.raises(ElasticsearchError) as caught:
        desired_state(cr, SETTINGS)
    assert reason in caught.value.reason


def test_link_local_provider_urls_are_the_operators_to_allow_not_a_crs():
    spec = {**minimal_spec("openai", "text_embedding"),
            "deployment": {"env": [{"name": "KUBEINFER_ALLOW_LINK_LOCAL_URLS", "value": "true"}]}}
    with pytest.raises(ElasticsearchError) as err:
        desired_state(manifest(spec), SETTINGS)
    assert "KUBEINFER_ALLOW_LINK_LOCAL_URLS" in err.value.reason and "operator" in err.value.reason

    def pod_env(settings):
        state = desired_state(manifest(minimal_spec("openai", "text_embedding")), settings)
        [container] = state.deployment["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e.get("value") for e in container["env"]}

    assert "KUBEINFER_ALLOW_LINK_LOCAL_URLS" not in pod_env(SETTINGS)
    allowing = OperatorSettings.from_env({"KUBEINFER_ALLOW_LINK_LOCAL_URLS": "true"})
    assert pod_env(allowing)["KUBEINFER_ALLOW_LINK_LOCAL_URLS"] == "true"
