"""The images `make images` builds, each started as the chart starts it: as uid 10001, with
its entrypoint and environment, a read-only root, /tmp and the model cache writable.

- operator: `--version`, `validate` on examples/, and `operator` against Kubernetes' own
  control plane (the API emulator where Go is missing), bringing an endpoint to Ready;
- operator as a provider proxy: `serve` of an OpenAI endpoint through a fake OpenAI;
- server: all-MiniLM-L6-v2 served offline from its export in the cache, without torch,
  answering /readyz and an embedding equal to local mode's;
- server-cuda: torch imports and reports its CUDA build.

`make image-test` runs this after `make images`; `make test` does not collect it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from apiservers import api_server
from controlplane.cluster import ToolMissing, build as build_control_plane
from local_mode import LocalMode, ServedFake, free_port, openai_fake
from rootfs import CACHE_DIR, Image, image_names
from shipping import REPO, tool

pytestmark = pytest.mark.skipif(shutil.which("buildah") is None and not os.environ.get("KUBEINFER_REQUIRE_TOOLS"),
                                reason="buildah is not installed")
USER = "10001:10001"
SENTENCE = "Images are built and started without an engine."


@pytest.fixture(scope="module")
def images():
    mounted: dict[str, Image] = {}

    def get(target: str) -> Image:
        if target not in mounted:
            mounted[target] = Image.mount(image_names()[target])
        return mounted[target]

    yield get
    for image in mounted.values():
        image.remove()


def wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text()[-4000:]}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} not ready in {timeout}s:\n{log.read_text()[-4000:]}"
        time.sleep(0.1)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def owned_by_image_user(folder: Path) -> Path:
    subprocess.run(["chown", "-R", USER, str(folder)], check=True)
    return folder


@pytest.mark.parametrize("target", ["operator", "server", "server-cuda"])
def test_each_image_runs_as_its_user_and_reports_its_version(images, target):
    image = images(target)
    assert image.user == USER
    assert image.config["Entrypoint"] == ["kubeinfer"]
    proc = image.run(["--version"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"kubeinfer {image.name.rsplit(':', 1)[1]}"


def test_the_operator_image_validates_the_examples(images):
    proc = images("operator").run(["validate", "/tmp/examples"], binds={REPO / "examples": "/tmp/examples"})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_root_file_system_is_read_only(images):
    proc = images("operator").run(["-c", "open('/opt/kubeinfer/x', 'w')"], entrypoint=["python3"])
    assert proc.returncode != 0 and "Read-only file system" in proc.stderr


@pytest.fixture
def cluster(request):
    """Kubernetes' own control plane where Go builds it (as under make), else the emulator."""
    try:
        build_control_plane(quiet=True)
        kind = "real"
    except ToolMissing:
        kind = "emulator"
    with api_server(request, kind) as cluster:
        yield cluster


def test_the_operator_image_brings_an_endpoint_to_ready(images, cluster, tmp_path):
    kubeconfig = owned_by_image_user(cluster.write_kubeconfig(tmp_path / "kubeconfig"))
    log, liveness = tmp_path / "operator.log", free_port()
    kubectl = [tool("kubectl"), "--kubeconfig", str(kubeconfig)]
    subprocess.run([*kubectl, "create", "secret", "generic", "openai", "--from-literal=api-key=sk-test"],
                   check=True, capture_output=True)
    operator = images("operator").start(
        ["operator", "--liveness", f"http://127.0.0.1:{liveness}/healthz"], log=log,
        env={"KUBECONFIG": "/tmp/kube/config", "KUBEINFER_METRICS_PORT": "0"},
        binds={kubeconfig: "/tmp/kube/config"})
    try:
        wait_http(f"http://127.0.0.1:{liveness}/healthz", operator, log)
        subprocess.run([*kubectl, "apply", "-f", str(REPO / "examples/openai/text_embedding.yaml")], check=True,
                       capture_output=True)
        deadline = time.monotonic() + 90
        while True:
            status = subprocess.run([*kubectl, "get", "ie", "openai-embeddings", "-o",
                                     "jsonpath={.status.conditions[?(@.type=='Ready')].status}"],
                                    capture_output=True, text=True).stdout
            if status == "True":
                break
            assert operator.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, f"not Ready ({status!r}):\n{log.read_text()[-4000:]}"
            time.sleep(0.5)
        image = subprocess.run([*kubectl, "get", "deploy", "openai-embeddings", "-o",
                                "jsonpath={.spec.template.spec.containers[0].image}"],
                               capture_output=True, text=True).stdout
        assert image == images("operator").name  # the proxy runs the operator's image
    finally:
        stop(operator)
    assert "Traceback" not in log.read_text(), log.read_text()[-4000:]


def test_the_operator_image_proxies_to_a_provider(images, tmp_path):
    (tmp_path / "secrets" / "openai").mkdir(parents=True)
    (tmp_path / "secrets" / "openai" / "api-key").write_text("sk-proxy\n")
    with ServedFake(openai_fake()) as provider:
        manifest = tmp_path / "endpoint.yaml"
        manifest.write_text(json.dumps({
            "apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": "openai"},
            "spec": {"taskType": "text_embedding", "service": "openai", "serviceSettings": {
                "model_id": "text-embedding-3-small", "url": f"{provider.url}/v1",
                "api_key": {"secretKeyRef": {"name": "openai", "key": "api-key"}}}}}))
        port, log = free_port(), tmp_path / "proxy.log"
        proxy = images("operator").start(
            ["serve", "--config", "/tmp/config/endpoint.yaml", "--host", "127.0.0.1", "--port", str(port),
             "--secrets-dir", "/tmp/secrets"], log=log,
            binds={manifest: "/tmp/config/endpoint.yaml", tmp_path / "secrets": "/tmp/secrets"})
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", proxy, log)
            r = httpx.post(f"http://127.0.0.1:{port}/_inference/text_embedding/openai", json={"input": ["abc"]})
            assert r.status_code == 200, r.text
            assert r.json() == {"text_embedding": [{"embedding": [3.0, 0.5, -0.25]}]}
            received = provider.fake.to("/v1/embeddings")[-1]
            assert received.headers["authorization"] == "Bearer sk-proxy"
        finally:
            stop(proxy)


@pytest.fixture(scope="module")
def minilm_cache(tmp_path_factory, minilm_path) -> Path:
    """A model cache holding all-MiniLM-L6-v2 and its checked export, as `kubeinfer export`
    leaves it (run here with the venv's torch)."""
    cache = tmp_path_factory.mktemp("model-cache")
    shutil.copytree(minilm_path, cache / "all-minilm-l6-v2")
    proc = subprocess.run([sys.executable, "-P", "-m", "kubeinfer.cli", "export", str(cache / "all-minilm-l6-v2"),
                           "--cache-dir", str(cache)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return owned_by_image_user(cache)


def minilm_manifest(path: Path, model_id: str) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": "minilm"},
        "spec": {"taskType": "text_embedding", "service": "elasticsearch",
                 "serviceSettings": {"model_id": model_id, "num_threads": 1, "num_allocations": 1}}}))
    return path


@pytest.fixture(scope="module")
def local_mode_embedding(tmp_path_factory, minilm_path) -> list[float]:
    root = tmp_path_factory.mktemp("local")
    (root / "manifests").mkdir()
    minilm_manifest(root / "manifests" / "minilm.yaml", str(minilm_path))
    with LocalMode("-f", str(root / "manifests"), "--cache-dir", str(root / "cache"), state_dir=root / "state") as local:
        r = local.client.post("/_inference/text_embedding/minilm", json={"input": [SENTENCE]})
        assert r.status_code == 200, r.text
        return r.json()["text_embedding"][0]["embedding"]


def test_the_server_image_serves_minilm_offline_without_torch(images, tmp_path, minilm_cache, local_mode_embedding):
    image = images("server")
    assert not list(image.rootfs.glob("opt/kubeinfer/lib/python3*/site-packages/torch"))
    port, log = free_port(), tmp_path / "server.log"
    manifest = minilm_manifest(tmp_path / "endpoint.yaml", f"{CACHE_DIR}/all-minilm-l6-v2")
    started = time.perf_counter()
    server = image.start(["serve", "--config", "/tmp/config/endpoint.yaml", "--host", "127.0.0.1", "--port",
                          str(port), "--cache-dir", CACHE_DIR], log=log, env={"HF_HUB_OFFLINE": "1"},
                         binds={manifest: "/tmp/config/endpoint.yaml"}, cache=minilm_cache)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", server, log)
        r = httpx.post(f"http://127.0.0.1:{port}/_inference/text_embedding/minilm", json={"input": [SENTENCE]})
        first_answer = time.perf_counter() - started
        # unshare, sh, chroot and env each exec the next: the process is the server's Python
        fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        assert r.status_code == 200, r.text
        ours = r.json()["text_embedding"][0]["embedding"]
    finally:
        stop(server)
    assert len(ours) == 384
    assert max(abs(a - b) for a, b in zip(ours, local_mode_embedding)) < 1e-5
    cosine = sum(a * b for a, b in zip(ours, local_mode_embedding)) / math.sqrt(
        sum(a * a for a in ours) * sum(b * b for b in local_mode_embedding))
    assert cosine > 0.99999
    print(f"server image: process start -> first embedding {first_answer:.2f}s, {cpu:.2f}s of CPU "
          f"(load average {os.getloadavg()[0]:.1f})")


def test_the_cuda_image_imports_torch_and_reports_its_cuda_build(images):
    proc = images("server-cuda").run(
        ["-c", "import torch, onnxruntime, transformers; print(torch.__version__, torch.version.cuda)"],
        entrypoint=["python3"], timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    version, cuda = proc.stdout.split()
    assert version.startswith("2.") and cuda != "None" and cuda[0].isdigit()
