"""Operator settings come from the environment variables the Helm chart sets."""

import pytest

from kubeinfer.config import ENVIRONMENT, OperatorSettings, SettingsError


def test_defaults_need_no_environment():
    settings = OperatorSettings.from_env({})
    assert settings.gpu_resource == "nvidia.com/gpu"
    assert settings.gpus_per_endpoint == 1
    assert settings.all_namespaces
    assert settings.model_cache_pvc == ""
    assert settings.resolve_model(".multilingual-e5-small") == "intfloat/multilingual-e5-small"
    assert settings.resolve_model("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"


def test_every_setting_is_read_from_its_variable():
    env = {
        "KUBEINFER_SERVER_IMAGE": "reg/server-cuda:1",
        "KUBEINFER_SERVER_CPU_IMAGE": "reg/server:1",
        "KUBEINFER_PROXY_IMAGE": "reg/proxy:1",
        "KUBEINFER_IMAGE_PULL_POLICY": "Always",
        "KUBEINFER_GPU_RESOURCE": "amd.com/gpu",
        "KUBEINFER_GPUS_PER_ENDPOINT": "0",
        "KUBEINFER_MODEL_CACHE_PVC": "models",
        "KUBEINFER_MODEL_CACHE_SIZE": "50Gi",
        "KUBEINFER_MODEL_ALIASES": '{".rerank-v1": "BAAI/bge-reranker-base"}',
        "KUBEINFER_WATCH_NAMESPACES": " team-a, team-b ,",
        "KUBEINFER_CLUSTER_DOMAIN": "corp.local",
        "KUBEINFER_LOG_LEVEL": "debug",
        "KUBEINFER_METRICS_PORT": "9100",
        "KUBEINFER_AUTOSCALER": "KEDA",
        "KUBEINFER_SCALE_TO_ZERO_AFTER": "60",
        "KUBEINFER_PROMETHEUS_ADDRESS": "http://prom:9090",
        "KUBEINFER_TARGET_REQUESTS": "2",
        "KUBEINFER_ENDPOINT_NETWORK_POLICY": "false",
        "KUBEINFER_ENDPOINT_ALLOWED_NAMESPACES": "monitoring, apps",
        "KUBEINFER_GATEWAY_NAMESPACE": "kubeinfer",
        "KUBEINFER_GATEWAY_POD_LABELS": '{"app": "gw"}',
        "KUBEINFER_ALLOW_LINK_LOCAL_URLS": "true",
        "KUBEINFER_DEPLOYMENT_POLICY": '{"allowedImagePrefixes": ["reg/"], "maxResources": {"cpu": 8}}',
        "KUBEINFER_REGION_POLICY_NAMESPACE": "policies",
        "KUBEINFER_REGION_NODE_PLACEMENT": "true",
        "KUBEINFER_POOL_MEMORY": "12Gi",
        "KUBEINFER_GATEWAY_PARENT": "infra/edge",
        "KUBEINFER_INFERENCE_POOL": "true",
        "KUBEINFER_ENDPOINT_PICKER": "picker:9002",
        "KUBEINFER_OPERATOR_NAMESPACE": "kubeinfer",
        "KUBEINFER_OPERATOR_POD_LABELS": '{"app": "op"}',
        "KUBEINFER_MODEL_SERVER_URL": "http://127.0.0.1:8080",
    }
    assert set(env) == set(ENVIRONMENT.values())
    s = OperatorSettings.from_env(env)
    assert (s.server_image, s.server_cpu_image, s.proxy_image) == ("reg/server-cuda:1", "reg/server:1", "reg/proxy:1")
    assert s.image_pull_policy == "Always"
    assert (s.gpu_resource, s.gpus_per_endpoint) == ("amd.com/gpu", 0)
    assert (s.model_cache_pvc, s.model_cache_size) == ("models", "50Gi")
    assert s.resolve_model(".rerank-v1") == "BAAI/bge-reranker-base"
    # aliases not overridden keep the catalog's defaults
    assert s.resolve_model(".multilingual-e5-small") == "intfloat/multilingual-e5-small"
    assert s.watch_namespaces == ("team-a", "team-b") and not s.all_namespaces
    assert (s.cluster_domain, s.log_level, s.metrics_port) == ("corp.local", "DEBUG", 9100)
    assert (s.autoscaler, s.scale_to_zero_after, s.prometheus_address, s.target_requests) == (
        "keda", 60, "http://prom:9090", 2)
    assert (s.endpoint_network_policy, s.endpoint_allowed_namespaces) == (False, ("monitoring", "apps"))
    assert (s.gateway_namespace, s.gateway_pod_labels) == ("kubeinfer", {"app": "gw"})
    assert s.allow_link_local_urls is True
    assert s.deployment_policy.allowed_image_prefixes == ("reg/",) and s.deployment_policy.max_resources == {"cpu": 8}
    assert (s.region_policy_namespace, s.region_node_placement) == ("policies", True)
    assert (s.pool_memory, s.gateway_parent, s.inference_pool, s.endpoint_picker) == (
        "12Gi", "infra/edge", True, "picker:9002")
    assert (s.operator_namespace, s.operator_pod_labels, s.model_server_url) == (
        "kubeinfer", {"app": "op"}, "http://127.0.0.1:8080")


@pytest.mark.parametrize(
    "var, value",
    [
        ("KUBEINFER_GPUS_PER_ENDPOINT", "two"),
        ("KUBEINFER_GPUS_PER_ENDPOINT", "-1"),
        ("KUBEINFER_MODEL_ALIASES", "{not json"),
        ("KUBEINFER_MODEL_ALIASES", '["a"]'),
        ("KUBEINFER_IMAGE_PULL_POLICY", "Sometimes"),
        ("KUBEINFER_METRICS_PORT", "70000"),
        ("KUBEINFER_AUTOSCALER", "vpa"),
        ("KUBEINFER_SCALE_TO_ZERO_AFTER", "soon"),
        ("KUBEINFER_DEPLOYMENT_POLICY", "{not json"),
        ("KUBEINFER_DEPLOYMENT_POLICY", '{"maxResources": {"cpu": "lots"}}'),
        ("KUBEINFER_GATEWAY_POD_LABELS", "{not json"),
    ],
)
def test_bad_values_name_the_variable(var, value):
    with pytest.raises(SettingsError, match=var):
        OperatorSettings.from_env({var: value})
