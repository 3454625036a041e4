"""Local mode keeps endpoints created by PUT across restarts, in files only the user can
read, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import stat

import pytest
from local_mode import LocalMode, ServedFake, openai_fake


@pytest.fixture
def provider():
    with ServedFake(openai_fake()) as served:
        yield served


def test_put_endpoints_survive_a_restart_in_private_files(tmp_path, provider):
    state = tmp_path / "state"
    body = {"service": "openai", "service_settings": {
        "api_key": "sk-kept-secret", "model_id": "text-embedding-3-small", "url": f"{provider.url}/v1"}}
    first = LocalMode(state_dir=state).start()
    try:
        assert first.client.put("/_inference/text_embedding/kept", json=body).status_code == 200
        assert first.client.put("/_inference/text_embedding/dropped", json=body).status_code == 200
        assert first.client.delete("/_inference/dropped").status_code == 200
    finally:
        code = first.interrupt()
    assert code == 0, first.text
    assert "all endpoints closed" in first.text

    record = state / "endpoints" / "kept.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "endpoints").stat().st_mode) == 0o700
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert json.loads(record.read_text())["service_settings"]["api_key"] == "sk-kept-secret"
    assert not (state / "endpoints" / "dropped.json").exists()
    assert "sk-kept-secret" not in first.text

    with LocalMode(state_dir=state) as second:
        listed = second.client.get("/_inference").json()["endpoints"]
        assert [e["inference_id"] for e in listed if not e["inference_id"].startswith(".")] == ["kept"]
        assert "sk-kept-secret" not in json.dumps(listed)
        answer = second.client.post("/_inference/text_embedding/kept", json={"input": "abc"})
        assert answer.json() == {"text_embedding": [{"embedding": [3.0, 0.5, -0.25]}]}
        assert provider.fake.to("/v1/embeddings")[-1].headers["authorization"] == "Bearer sk-kept-secret"
        assert second.client.delete("/_inference/kept").status_code == 200
        assert not record.exists()
        assert second.interrupt() == 0


def test_a_broken_manifest_stops_local_mode_with_the_file_named(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: kubeinfer.io/v1alpha1\nkind: InferenceEndpoint\nmetadata: {name: bad}\n"
        "spec: {taskType: text_embedding, service: openai, serviceSettings: {model_id: m}}\n")
    local = LocalMode("-f", str(tmp_path / "bad.yaml"), state_dir=tmp_path / "state")
    with pytest.raises(RuntimeError) as failure:
        local.start()
    assert "bad.yaml" in str(failure.value)
    assert "[secret_settings] must have either the [api_key] or the [client_secret] setting" in str(failure.value)
    assert local.process.returncode == 2
