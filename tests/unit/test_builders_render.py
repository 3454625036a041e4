"""``kubeinfer render`` prints what the operator would create, for review in GitOps."""

import subprocess
import sys
from pathlib import Path

import yaml

from kubeinfer.cli import main

MANIFEST = """\
apiVersion: kubeinfer.io/v1alpha1
kind: InferenceEndpoint
metadata: {name: chat, namespace: ml}
spec:
  taskType: completion
  service: openai
  serviceSettings:
    model_id: gpt-4o
    api_key: {secretKeyRef: {name: openai, key: api-key}}
"""


def test_render_prints_the_objects_with_the_given_uid(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("KUBEINFER_PROXY_IMAGE", "reg/proxy:9")
    path = tmp_path / "chat.yaml"
    path.write_text(MANIFEST)
    assert main(["render", str(path), "--uid", "1234"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Service", "NetworkPolicy", "Deployment"]
    assert all(d["metadata"]["ownerReferences"][0]["uid"] == "1234" for d in docs)
    assert docs[3]["spec"]["template"]["spec"]["containers"][0]["image"] == "reg/proxy:9"


def test_render_without_uid_uses_a_placeholder_and_says_so(tmp_path: Path):
    path = tmp_path / "chat.yaml"
    path.write_text(MANIFEST)
    out = subprocess.run([sys.executable, "-P", "-m", "kubeinfer.cli", "render", str(path)],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("# ownerReferences use the placeholder uid")
    docs = list(yaml.safe_load_all(out))
    assert docs[0]["metadata"]["ownerReferences"][0]["uid"] == "00000000-0000-0000-0000-000000000000"


def test_render_reports_an_invalid_manifest_with_the_catalogs_reason(tmp_path: Path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(MANIFEST.replace("model_id: gpt-4o", "bogus: 1"))
    assert main(["render", str(path)]) == 1
    assert "unknown to the [openai] service" in capsys.readouterr().err


SCALE_TO_ZERO = """\
apiVersion: kubeinfer.io/v1alpha1
kind: InferenceEndpoint
metadata: {name: e5, namespace: ml}
spec:
  taskType: text_embedding
  service: elasticsearch
  serviceSettings:
    model_id: .multilingual-e5-small
    num_threads: 1
    adaptive_allocations: {enabled: true, min_number_of_allocations: 0, max_number_of_allocations: 4}
"""


def test_render_of_min_zero_shows_a_keda_scaled_object_or_with_keda_off_an_hpa(tmp_path: Path, capsys, monkeypatch):
    path = tmp_path / "e5.yaml"
    path.write_text(SCALE_TO_ZERO)
    assert main(["render", str(path), "--uid", "1"]) == 0
    docs = {d["kind"]: d for d in yaml.safe_load_all(capsys.readouterr().out)}
    assert docs["ScaledObject"]["spec"]["minReplicaCount"] == 0
    assert "HorizontalPodAutoscaler" not in docs and "replicas" not in docs["Deployment"]["spec"]
    monkeypatch.setenv("KUBEINFER_AUTOSCALER", "hpa")
    assert main(["render", str(path), "--uid", "1"]) == 0
    docs = {d["kind"]: d for d in yaml.safe_load_all(capsys.readouterr().out)}
    assert "ScaledObject" not in docs
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["metrics"][0]["pods"]["metric"]["name"]) == (1, "kubeinfer_requests_in_flight")
