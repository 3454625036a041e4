"""The Helm chart, rendered with `helm template` and checked object by object: lint, schema
validity against Kubernetes' OpenAPI, pod hardening, the operator's settings, values schema."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest
import yaml

from kubeinfer.config import ENVIRONMENT, OperatorSettings
from shipping import (CHART, KUBERNETES_VERSIONS, NAMESPACE, REPO, SERVED_SINCE, env_of, helm, kubernetes_versions,
                      load_all, named, of_kind, pod_specs, render, set_args, template)

# Each non-default set-up the chart must support; the id names the variation.
VARIATIONS: dict[str, dict] = {
    "defaults": {},
    "gpu-off": {"endpoints.gpu.perEndpoint": 0},
    "gateway-off": {"gateway.enabled": False},
    "one-namespace": {"watchNamespaces": ["search"], "gateway.endpointNamespace": "search"},
    "two-replicas": {"operator.replicas": 2, "gateway.replicas": 2},
    "monitored": {"serviceMonitor.enabled": True, "networkPolicy.enabled": True,
                  "networkPolicy.gatewayFrom": [{"namespaceSelector": {"matchLabels": {"team": "search"}}}],
                  "podMonitor.enabled": True, "grafanaDashboard.enabled": True},
    "no-metrics-no-auth": {"operator.metrics.port": 0, "gateway.auth.enabled": False},
}
# Kinds of other projects' CRDs: no OpenAPI schema in kubernetes-validate.
CUSTOM_KINDS = {"ServiceMonitor": "monitoring.coreos.com/v1", "PodMonitor": "monitoring.coreos.com/v1",
                "ClusterKopfPeering": "kopf.dev/v1", "KopfPeering": "kopf.dev/v1"}

OPERATOR = "kubeinfer-operator"
GATEWAY = "kubeinfer-gateway"


@pytest.fixture(scope="module")
def defaults() -> list[dict]:
    return render()


def operator_container(objs: list[dict]) -> dict:
    return named(objs, "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("variation", VARIATIONS)
def test_chart_passes_helm_lint_strict(variation):
    out = helm("lint", str(CHART), "--strict", *set_args(VARIATIONS[variation])).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("variation", VARIATIONS)
def test_every_rendered_object_is_valid_for_kubernetes(variation):
    objs = render(VARIATIONS[variation], include_crds=True)
    assert objs
    for obj in objs:
        if obj["kind"] in CUSTOM_KINDS:
            assert obj["apiVersion"] == CUSTOM_KINDS[obj["kind"]]
            continue
        # strict: an unknown field (a typo in a template) is an error too.
        for version in kubernetes_versions(obj["kind"]):
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("variation", VARIATIONS)
def test_every_pod_runs_non_root_read_only_without_privileges(variation):
    pods = list(pod_specs(render(VARIATIONS[variation])))
    assert pods
    for workload, spec in pods:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, workload
        assert pod["runAsUser"] > 0, workload
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, workload
        assert spec.get("hostNetwork") is not True and spec.get("hostPID") is not True, workload
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            where = f"{workload} container {c['name']}"
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc.get("privileged", False) is False, where
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), where
            assert sc["runAsNonRoot"] is True, where
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), where
            assert "memory" in c["resources"]["limits"], where
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            # A read-only root file system still needs a writable /tmp.
            assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), where


def test_defaults_render_operator_gateway_and_their_accounts(defaults):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in defaults)
    assert ("Deployment", OPERATOR) in kinds and ("Deployment", GATEWAY) in kinds
    assert ("ServiceAccount", OPERATOR) in kinds and ("ServiceAccount", GATEWAY) in kinds
    gateway = named(defaults, "Deployment", GATEWAY)["spec"]["template"]["spec"]
    assert gateway["serviceAccountName"] == GATEWAY
    assert gateway["containers"][0]["args"][:1] == ["gateway"]
    assert operator_container(defaults)["args"][0] == "operator"
    svc = named(defaults, "Service", GATEWAY)
    assert svc["spec"]["ports"][0]["port"] == 9200
    assert svc["spec"]["selector"] == named(defaults, "Deployment", GATEWAY)["spec"]["selector"]["matchLabels"]
    for obj in defaults:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding", *SERVED_SINCE):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
    # One operator, no peering: nothing of kopf's peering is rendered.
    assert not of_kind(defaults, "ClusterKopfPeering")
    assert not any(a.startswith("--peering") for a in operator_container(defaults)["args"])


def test_operator_environment_sets_every_operator_setting(defaults):
    env = env_of(operator_container(defaults))
    assert set(ENVIRONMENT.values()) <= set(env)
    settings = OperatorSettings.from_env({k: v for k, v in env.items() if isinstance(v, str)})
    assert settings.server_image == "ghcr.io/kubeinfer/kubeinfer-server-cuda:0.1.0"
    assert settings.server_cpu_image == "ghcr.io/kubeinfer/kubeinfer-server:0.1.0"
    # Provider proxies need no torch: they run the operator's image.
    assert settings.proxy_image == "ghcr.io/kubeinfer/kubeinfer:0.1.0"
    assert settings.gpus_per_endpoint == 1 and settings.gpu_resource == "nvidia.com/gpu"
    assert settings.watch_namespaces == () and settings.model_cache_pvc == ""
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # Pool pods admit the operator's own pods (it reads which models they loaded).
    operator_pods = named(defaults, "Deployment", OPERATOR)["spec"]["template"]["metadata"]["labels"]
    assert settings.operator_namespace == NAMESPACE
    assert settings.operator_pod_labels.items() <= operator_pods.items()
    assert settings.operator_pod_labels["app.kubernetes.io/component"] == "operator"


def test_every_operator_value_reaches_the_operator_settings():
    objs = render({
        "image.tag": "1.2.3",
        "endpoints.serverImage": {"repository": "registry.example/server-cuda", "tag": "@sha256:" + "a" * 64},
        "endpoints.serverCpuImage": {"repository": "registry.example/server", "tag": "9"},
        "endpoints.proxyImage": {"repository": "registry.example/proxy", "tag": "7"},
        "endpoints.imagePullPolicy": "Always",
        "endpoints.gpu": {"resource": "amd.com/gpu", "perEndpoint": 2},
        "endpoints.modelCache": {"pvc": "models", "size": "50Gi"},
        "endpoints.modelAliases": {".multilingual-e5-small": "intfloat/multilingual-e5-base"},
        "endpoints.clusterDomain": "corp.local",
        "watchNamespaces": ["search", "ml"],
        "gateway.endpointNamespace": "search",
        "operator.logLevel": "DEBUG",
        "operator.metrics.port": 9464,
    })
    container = operator_container(objs)
    env = {k: v for k, v in env_of(container).items() if isinstance(v, str)}
    s = OperatorSettings.from_env(env)
    assert s.server_image == "registry.example/server-cuda@sha256:" + "a" * 64
    assert s.server_cpu_image == "registry.example/server:9"
    assert s.proxy_image == "registry.example/proxy:7"
    assert s.image_pull_policy == "Always"
    assert (s.gpu_resource, s.gpus_per_endpoint) == ("amd.com/gpu", 2)
    assert (s.model_cache_pvc, s.model_cache_size) == ("models", "50Gi")
    assert s.resolve_model(".multilingual-e5-small") == "intfloat/multilingual-e5-base"
    assert s.resolve_model(".elser_model_2")  # the other built-in aliases stay
    assert s.watch_namespaces == ("search", "ml")
    assert (s.cluster_domain, s.log_level, s.metrics_port) == ("corp.local", "DEBUG", 9464)
    assert container["image"] == "ghcr.io/kubeinfer/kubeinfer:1.2.3"
    assert "--namespace=search" in container["args"] and "--namespace=ml" in container["args"]
    assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in container["ports"]


def test_gpu_off_makes_the_operator_serve_models_on_cpu():
    env = env_of(operator_container(render(VARIATIONS["gpu-off"])))
    assert OperatorSettings.from_env({k: v for k, v in env.items() if isinstance(v, str)}).gpus_per_endpoint == 0


def test_gateway_off_renders_no_gateway_object():
    objs = render(VARIATIONS["gateway-off"])
    assert not [o for o in objs
                if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "gateway"]
    assert of_kind(objs, "Deployment") == [named(objs, "Deployment", OPERATOR)]


def test_two_replicas_turn_on_kopf_peering():
    objs = render(VARIATIONS["two-replicas"])
    deployment = named(objs, "Deployment", OPERATOR)
    assert deployment["spec"]["replicas"] == 2
    assert "--peering=kubeinfer" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert named(objs, "ClusterKopfPeering", "kubeinfer")["apiVersion"] == "kopf.dev/v1"
    crds = helm("show", "crds", str(CHART)).stdout
    assert "name: clusterkopfpeerings.kopf.dev" in crds and "name: kopfpeerings.kopf.dev" in crds


def test_peering_in_watched_namespaces_uses_namespaced_peerings():
    objs = render({"watchNamespaces": ["a", "b"], "gateway.enabled": False, "operator.replicas": 3})
    peerings = of_kind(objs, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["a", "b"]
    assert not of_kind(objs, "ClusterKopfPeering")


def test_monitoring_renders_service_monitor_and_network_policies():
    objs = render(VARIATIONS["monitored"])
    monitor = named(objs, "ServiceMonitor", "kubeinfer")
    ports = sorted(e["port"] for e in monitor["spec"]["endpoints"])
    assert ports == ["http", "metrics"]
    # Each scraped port is served by a Service the monitor selects.
    selector = monitor["spec"]["selector"]["matchLabels"]
    served = {p["name"] for s in of_kind(objs, "Service")
              if selector.items() <= s["metadata"]["labels"].items() for p in s["spec"]["ports"]}
    assert {"http", "metrics"} <= served
    policies = {p["metadata"]["name"]: p for p in of_kind(objs, "NetworkPolicy")}
    assert set(policies) == {OPERATOR, GATEWAY}
    gateway_rule = policies[GATEWAY]["spec"]["ingress"][0]
    assert gateway_rule["from"] == [{"namespaceSelector": {"matchLabels": {"team": "search"}}}]
    for name, policy in policies.items():
        deployment = named(objs, "Deployment", name)
        assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_metrics_off_and_auth_off_drop_their_objects():
    objs = render(VARIATIONS["no-metrics-no-auth"])
    assert not [s for s in of_kind(objs, "Service") if s["metadata"]["name"].endswith("-metrics")]
    assert "--no-auth" in named(objs, "Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [r for r in of_kind(objs, "ClusterRole") if r["metadata"]["name"] == f"{GATEWAY}-auth"]


def test_gateway_namespace_outside_the_watched_ones_is_refused():
    proc = template({"watchNamespaces": ["search"]}, check=False)
    assert proc.returncode != 0
    assert "gateway.endpointNamespace" in proc.stderr and "watchNamespaces" in proc.stderr


@pytest.mark.parametrize("key, value, path", [
    ("operator.replicas", "two", "/operator/replicas"),
    ("endpoints.gpu.perEndpoint", "1", "/endpoints/gpu/perEndpoint"),
    ("gateway.enabled", "yes", "/gateway/enabled"),
    ("watchNamespaces", "search", "/watchNamespaces"),
    ("operator.logLevel", "LOUD", "/operator/logLevel"),
    ("endpoints.modelCache.size", "ten gigs", "/endpoints/modelCache/size"),
    ("operator.metrics", {"port": 9090, "path": "/m"}, "/operator/metrics"),
])
def test_values_schema_rejects_a_wrong_value(key, value, path):
    proc = template({key: value}, check=False)
    assert proc.returncode != 0, f"{key}={value!r} was accepted"
    assert path in proc.stderr


def test_values_schema_accepts_the_default_values_file():
    import json

    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)


def test_every_values_key_is_in_the_schema():
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(values: dict, node: dict, prefix: str) -> None:
        for key, value in values.items():
            assert key in node.get("properties", {}), f"{prefix}{key} is not in values.schema.json"
            child = node["properties"][key]
            if isinstance(value, dict) and "properties" in child:
                walk(value, child, f"{prefix}{key}.")

    walk(yaml.safe_load((CHART / "values.yaml").read_text()), schema, "")


def test_install_notes_show_a_first_endpoint_that_the_catalog_accepts():
    from kubeinfer.catalog.endpoint import from_manifest

    out = helm("install", "kubeinfer", str(CHART), "--namespace", NAMESPACE, "--dry-run=client").stdout
    notes = out.split("NOTES:", 1)[1]
    manifest = re.search(r"<<'YAML'.*?\n(.*?)\n\s*YAML\n", notes, re.S).group(1)
    endpoint = from_manifest(yaml.safe_load(manifest))
    assert endpoint.inference_id == "my-e5" and endpoint.service == "elasticsearch"
    assert "svc/kubeinfer-gateway 9200:9200" in notes
    assert "/_inference/text_embedding/my-e5" in notes


def test_chart_crd_is_the_generated_crd():
    generated = REPO / "crds" / "inferenceendpoints.kubeinfer.io.yaml"
    shipped = CHART / "crds" / "inferenceendpoints.kubeinfer.io.yaml"
    assert shipped.read_text() == generated.read_text()
    crd = yaml.safe_load(shipped.read_text())
    assert crd["metadata"]["name"] == "inferenceendpoints.kubeinfer.io"


def test_install_guide_documents_every_value_and_names_real_files():
    guide = (REPO / "docs" / "configuration.md").read_text()

    def leaves(values: dict, prefix: str = ""):
        for key, value in values.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and value and key not in ("resources", "podSecurityContext", "securityContext"):
                yield from leaves(value, f"{path}.")
            else:
                yield path

    for path in leaves(yaml.safe_load((CHART / "values.yaml").read_text())):
        head, _, leaf = path.rpartition(".")
        documented = f"`{path}`" in guide or (leaf in guide and (head.split(".")[0] in guide))
        assert documented, f"{path} is not in docs/configuration.md"
    for var in ENVIRONMENT.values():
        assert var in guide, var
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    for page in pages:
        for ref in set(re.findall(r"\b((?:charts|deploy|examples|bench|tests)/[\w./-]*\w)", page.read_text())):
            assert (REPO / ref).exists(), f"{page.name} names {ref}, which does not exist"


@pytest.mark.parametrize("variation", VARIATIONS)
def test_container_arguments_are_ones_the_kubeinfer_cli_accepts(variation):
    from kubeinfer.cli import build_parser

    objs = render(VARIATIONS[variation])
    for deployment in of_kind(objs, "Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        args = build_parser().parse_args(container["args"])
        assert args.command == deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        if args.command == "operator":
            port = int(args.liveness.rsplit(":", 1)[1].split("/")[0])
            assert {"name": "health", "containerPort": port, "protocol": "TCP"} in container["ports"]
            assert args.namespace == list(VARIATIONS[variation].get("watchNamespaces", []))
        else:
            assert {"name": "http", "containerPort": args.port, "protocol": "TCP"} in container["ports"]
            assert args.no_auth is not VARIATIONS[variation].get("gateway.auth.enabled", True)


async def test_gateway_serves_the_probes_the_chart_points_at():
    import asyncio

    import httpx

    from kubeinfer.kube import Connection
    from model_server.gateway.main import build_gateway_app

    from kubeemu.cluster import EmulatedCluster

    gateway = named(render(), "Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]
    liveness, readiness = (gateway[probe]["httpGet"]["path"] for probe in ("livenessProbe", "readinessProbe"))

    async def probes(api_server: str, *, wait: float) -> tuple[int, int, int]:
        """The liveness, readiness and unauthenticated /metrics statuses of a gateway on ``api_server``."""
        app = build_gateway_app(Connection(api_server, token="unused"), "kubeinfer")
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
                deadline = asyncio.get_running_loop().time() + wait
                while (ready := (await client.get(readiness)).status_code) != 200:
                    if asyncio.get_running_loop().time() > deadline:
                        break
                    await asyncio.sleep(0.1)
                return (await client.get(liveness)).status_code, ready, (await client.get("/metrics")).status_code

    # Ready once its endpoint index has listed the namespace; alive, not ready, before that.
    with EmulatedCluster() as cluster:
        # /metrics names endpoint ids: without a token, none are shown.
        assert await probes(cluster.url, wait=30) == (200, 200, 401)
    assert (await probes("http://127.0.0.1:9", wait=0))[:2] == (200, 503)
    monitor = of_kind(render({"serviceMonitor.enabled": True}), "ServiceMonitor")[0]
    gateway_scrape = [e for e in monitor["spec"]["endpoints"] if e["port"] == "http"][0]
    assert gateway_scrape["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"


def test_chart_installs_on_the_oldest_kubernetes_it_is_validated_for_and_not_older():
    oldest = KUBERNETES_VERSIONS[0]
    objs = load_all(helm("template", "kubeinfer", str(CHART), "--kube-version", oldest).stdout)
    # What that version does not serve is left out (the operator enforces the
    # deployment policy there); the rest is valid for it.
    assert not [o for o in objs if o["kind"] in SERVED_SINCE]
    for obj in objs:
        if obj["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(obj, oldest, strict=True)
    major, minor, _ = oldest.split(".")
    older = helm("template", "kubeinfer", str(CHART), "--kube-version", f"{major}.{int(minor) - 1}.0", check=False)
    assert older.returncode != 0 and "kubeVersion" in older.stderr


def test_disruption_budgets_only_for_more_than_one_replica():
    assert not of_kind(render(), "PodDisruptionBudget")
    objs = render({"operator.replicas": 2, "gateway.replicas": 3})
    budgets = {b["metadata"]["name"]: b for b in of_kind(objs, "PodDisruptionBudget")}
    assert set(budgets) == {OPERATOR, GATEWAY}
    for name, budget in budgets.items():
        assert budget["spec"]["maxUnavailable"] == 1
        assert budget["spec"]["selector"]["matchLabels"] == named(objs, "Deployment", name)["spec"]["selector"]["matchLabels"]
    off = render({"gateway.enabled": False, "gateway.replicas": 3})
    assert not of_kind(off, "PodDisruptionBudget")
