"""What a new user meets at the command line: a manifest that Kubernetes would reject,
a misspelled kind, no cluster, a busy port, a model that is not cached. Each gets one
clear line and a non-zero exit, never a traceback or a silent "OK".
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from local_mode import LocalMode

import kubeinfer
from kubeinfer.cli import main

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = """\
apiVersion: {api_version}
kind: {kind}
metadata:
  name: {name}
spec:
  taskType: text_embedding
  service: openai
  serviceSettings:
    model_id: text-embedding-3-small
    api_key: {{secretKeyRef: {{name: openai, key: api-key}}}}
"""


def write(tmp_path: Path, *, name="good", kind="InferenceEndpoint", api_version="kubeinfer.io/v1alpha1") -> Path:
    path = tmp_path / f"{name}-{kind}.yaml".replace("/", "-")
    path.write_text(ENDPOINT.format(name=name, kind=kind, api_version=api_version))
    return path


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "kubeinfer.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def test_validate_accepts_a_good_manifest(tmp_path, capsys):
    assert main(["validate", str(write(tmp_path))]) == 0
    assert "OK: 1 InferenceEndpoint manifest(s)" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, where, words", [
    ({"name": "bad_name"}, "metadata.name", "not a valid Kubernetes name"),
    ({"name": "Upper"}, "metadata.name", "not a valid Kubernetes name"),
    ({"kind": "InferenceEndpoints"}, "kind", "must be InferenceEndpoint"),
    ({"kind": "inferenceendpoint"}, "kind", "must be InferenceEndpoint"),
    ({"api_version": "kubeinfer.io/v1"}, "apiVersion", "must be kubeinfer.io/v1alpha1"),
    ({"api_version": "example.com/v1alpha1"}, "apiVersion", "must be kubeinfer.io/v1alpha1"),
])
def test_validate_fails_what_kubernetes_or_kubeinfer_would_reject(tmp_path, capsys, kwargs, where, words):
    path = write(tmp_path, **kwargs)
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: {where}: " in out and words in out
    assert "OK" not in out


def test_validate_fails_when_it_finds_no_endpoint(tmp_path, capsys):
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert main(["validate", str(tmp_path)]) == 1
    assert "no InferenceEndpoint manifest" in capsys.readouterr().out


def test_version_is_printed(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"kubeinfer {kubeinfer.__version__}"


@pytest.mark.parametrize("command", ["operator", "gateway"])
def test_no_cluster_is_one_line_and_a_non_zero_exit(tmp_path, command):
    result = run_cli(command, env={"KUBECONFIG": str(tmp_path / "absent"), "HOME": str(tmp_path),
                                   "KUBERNETES_SERVICE_HOST": ""})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith(f"kubeinfer {command}: cannot reach a Kubernetes API server")
    assert "Traceback" not in result.stderr + result.stdout


def test_local_on_a_busy_port_says_so_before_any_banner(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("local", "--port", str(port), "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 2
    assert f"kubeinfer local: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Elasticsearch's inference API at" not in result.stdout


def test_a_model_that_is_not_cached_says_how_to_get_it(tmp_path):
    with LocalMode("--cache-dir", str(tmp_path / "cache"), state_dir=tmp_path / "state") as local:
        response = local.client.put("/_inference/text_embedding/uncached", json={
            "service": "elasticsearch", "service_settings": {
                "model_id": "kubeinfer-tests/not-a-cached-model", "num_allocations": 1, "num_threads": 1}})
    reason = response.json()["error"]["reason"]
    assert response.status_code >= 400
    assert "is not in the model cache" in reason
    assert "hf download kubeinfer-tests/not-a-cached-model" in reason
    assert "downloads are disabled" not in reason
