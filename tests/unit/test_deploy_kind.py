"""What the kind install run uses, checked here without Docker: the script passes
shellcheck, its chart values render, its endpoints validate, and its fake OpenAI speaks
OpenAI's embeddings wire format and records what it received."""

from __future__ import annotations

import importlib.util
import threading
from http.server import ThreadingHTTPServer

import httpx
import pytest
import yaml

from kubeinfer.cli import main as kubeinfer
from shipping import CHART, REPO, env_of, helm, load_all, named, normalised, pod_specs, run, tool

E2E = REPO / "tests" / "e2e"


def test_kind_script_passes_shellcheck():
    proc = run([tool("shellcheck"), "--severity=style", str(E2E / "kind-install.sh")], check=False)
    assert proc.returncode == 0, proc.stdout


def test_kind_values_install_the_locally_built_images_on_cpu():
    objs = load_all(helm("template", "kubeinfer", str(CHART), "-n", "kubeinfer",
                         "-f", str(E2E / "kind-values.yaml")).stdout)
    operator = named(objs, "Deployment", "kubeinfer-operator")["spec"]["template"]["spec"]["containers"][0]
    assert operator["image"] == "kubeinfer/kubeinfer:e2e" and operator["imagePullPolicy"] == "Never"
    env = env_of(operator)
    assert env["KUBEINFER_GPUS_PER_ENDPOINT"] == "0"
    assert env["KUBEINFER_SERVER_CPU_IMAGE"] == "kubeinfer/kubeinfer-server:e2e"
    assert env["KUBEINFER_PROXY_IMAGE"] == "kubeinfer/kubeinfer:e2e"
    assert env["KUBEINFER_IMAGE_PULL_POLICY"] == "Never"
    # The images the script builds are the ones the values name.
    script = (E2E / "kind-install.sh").read_text()
    assert "--target operator -t kubeinfer/kubeinfer:e2e" in script
    assert "--target server -t kubeinfer/kubeinfer-server:e2e" in script


def test_kind_endpoints_are_valid_and_live_where_the_gateway_creates_endpoints():
    assert kubeinfer(["validate", str(E2E / "kind-endpoints.yaml")]) == 0
    values = yaml.safe_load((E2E / "kind-values.yaml").read_text())
    endpoints = load_all((E2E / "kind-endpoints.yaml").read_text())
    assert {e["spec"]["service"] for e in endpoints} == {"elasticsearch", "openai"}
    assert {e["metadata"]["namespace"] for e in endpoints} == {values["gateway"]["endpointNamespace"]}
    openai = next(e for e in endpoints if e["spec"]["service"] == "openai")
    assert openai["spec"]["serviceSettings"]["url"].startswith("http://fake-openai.e2e.svc.cluster.local/")


@pytest.fixture
def fake_openai():
    spec = importlib.util.spec_from_file_location("fake_openai", E2E / "fake_openai.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = ThreadingHTTPServer(("127.0.0.1", 0), module.OpenAIEmbeddings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fake_openai_answers_like_openai_and_records_the_request(fake_openai):
    body = {"model": "text-embedding-3-small", "input": ["one", "two words"], "dimensions": 8}
    answer = httpx.post(f"{fake_openai}/v1/embeddings", json=body,
                        headers={"Authorization": "Bearer sk-test"}).json()
    assert answer["object"] == "list" and answer["model"] == "text-embedding-3-small"
    assert [d["index"] for d in answer["data"]] == [0, 1]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 8 for d in answer["data"])
    assert answer["usage"]["prompt_tokens"] == 3
    received = httpx.get(f"{fake_openai}/received").json()["received"]
    assert received == [{"path": "/v1/embeddings", "authorization": "Bearer sk-test", "body": body}]


def test_fake_openai_refuses_a_request_without_a_key(fake_openai):
    answer = httpx.post(f"{fake_openai}/v1/embeddings", json={"model": "m", "input": "x"})
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_kind_kubectl_install_is_the_same_as_its_helm_install():
    """The run installs with Helm or, with KUBEINFER_E2E_INSTALL=kustomize, with kubectl;
    both must put the same objects in the cluster."""
    with_helm = normalised(load_all(helm("template", "kubeinfer", str(CHART), "-n", "kubeinfer", "--include-crds",
                                         "-f", str(E2E / "kind-values.yaml")).stdout))
    with_kubectl = normalised(load_all(run([tool("kubectl"), "kustomize", str(E2E / "kustomize")]).stdout))
    with_kubectl.pop(("Namespace", "", "kubeinfer"))
    # kustomize's merge puts the environment it patched first; order carries no meaning here.
    for objs in (with_helm, with_kubectl):
        for _, spec in pod_specs(objs.values()):
            for container in spec["containers"]:
                container["env"] = sorted(container.get("env", []), key=lambda e: e["name"])
    assert sorted(with_kubectl) == sorted(with_helm)
    for key, obj in with_helm.items():
        assert with_kubectl[key] == obj, key
    script = (E2E / "kind-install.sh").read_text()
    assert '-k "$HERE/kustomize"' in script and '-f "$HERE/kind-values.yaml"' in script
