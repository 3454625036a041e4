"""One model-id resolver for the operator and the server: what the init container of a
rendered Deployment downloads is what the server in that pod loads, and a malformed
model map stops every role at start-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from endpoint_serving import serving
from kubeinfer.catalog import parse_endpoint
from kubeinfer.cli import main
from kubeinfer.config import ServerSettings

ELSER = """\
apiVersion: kubeinfer.io/v1alpha1
kind: InferenceEndpoint
metadata: {name: my-elser, namespace: ml}
spec:
  taskType: sparse_embedding
  service: elser
  serviceSettings: {num_allocations: 1, num_threads: 1}
"""


def render(tmp_path: Path, capsys, manifest: str = ELSER, *options: str) -> dict:
    path = tmp_path / "endpoint.yaml"
    path.write_text(manifest)
    assert main(["render", str(path), "--uid", "1", *options]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    return next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]


def container_env(pod: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["containers"][0]["env"] if "value" in e}


def test_a_builtin_model_override_changes_what_the_init_container_downloads(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KUBEINFER_BUILTIN_MODEL_ELSER_MODEL_2", "acme/splade-en")
    pod = render(tmp_path, capsys)
    download = pod["initContainers"][0]["command"]
    assert download[-1] == "acme/splade-en"
    assert json.loads(container_env(pod)["KUBEINFER_MODEL_ALIASES"])[".elser_model_2"] == "acme/splade-en"


def test_a_builtin_model_override_in_the_crs_pod_env_reaches_the_init_container(tmp_path, capsys):
    manifest = ELSER + ("  deployment:\n    env:\n"
                        "    - {name: KUBEINFER_BUILTIN_MODEL_ELSER_MODEL_2, value: acme/splade-fr}\n")
    # The cluster's deployment policy lets a CR replace that built-in model.
    policy = tmp_path / "policy.yaml"
    policy.write_text("allowedEnvNames: [KUBEINFER_BUILTIN_MODEL_ELSER_MODEL_2]\n")
    pod = render(tmp_path, capsys, manifest, "--policy", str(policy))
    assert pod["initContainers"][0]["command"][-1] == "acme/splade-fr"
    env = container_env(pod)
    assert json.loads(env["KUBEINFER_MODEL_ALIASES"])[".elser_model_2"] == "acme/splade-fr"
    served = ServerSettings.from_env(env)
    assert served.resolve_model(".elser_model_2") == "acme/splade-fr"


async def test_the_server_loads_the_model_the_operator_rendered_for_its_pod(tmp_path, capsys, monkeypatch,
                                                                            tiny_models):
    monkeypatch.setenv("KUBEINFER_BUILTIN_MODEL_ELSER_MODEL_2", str(tiny_models["sparse"]))
    pod = render(tmp_path, capsys)
    assert "initContainers" not in pod  # a path is mounted, not downloaded
    # The server sees the pod's environment, not the operator's.
    monkeypatch.delenv("KUBEINFER_BUILTIN_MODEL_ELSER_MODEL_2")
    settings = ServerSettings.from_env(container_env(pod))
    config = parse_endpoint("my-elser", "sparse_embedding",
                            {"service": "elser", "service_settings": {"num_allocations": 1, "num_threads": 1}})
    async with serving(config, settings=settings) as (client, _):
        r = await client.post("/_inference/sparse_embedding/my-elser", json={"input": "the cat sat"})
    assert r.status_code == 200, r.text
    assert r.json()["sparse_embedding"][0]["embedding"]


@pytest.mark.parametrize("command", ["serve", "local"])
def test_a_malformed_model_map_stops_the_server_at_start_up(command, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KUBEINFER_MODEL_ALIASES", '{".elser_model_2": ')
    path = tmp_path / "endpoint.yaml"
    path.write_text(ELSER)
    args = ["serve", "--config", str(path)] if command == "serve" else ["local", "-f", str(path)]
    assert main(args) == 2
    assert "KUBEINFER_MODEL_ALIASES: not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize("var, value", [("KUBEINFER_MAX_BATCH_SIZE", "lots"), ("KUBEINFER_DEVICE", "tpu"),
                                        ("KUBEINFER_MAX_INPUTS_PER_REQUEST", "0")])
def test_a_bad_server_setting_names_its_variable(var, value, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(var, value)
    path = tmp_path / "endpoint.yaml"
    path.write_text(ELSER)
    assert main(["serve", "--config", str(path)]) == 2
    assert f"kubeinfer serve: {var}: " in capsys.readouterr().err


def test_a_bad_log_level_stops_the_gateway(monkeypatch, capsys):
    monkeypatch.setenv("KUBEINFER_LOG_LEVEL", "chatty")
    assert main(["gateway", "--no-auth"]) == 2
    assert "KUBEINFER_LOG_LEVEL" in capsys.readouterr().err
