"""Local mode's start-up, as a user meets it: every task type starts, restarts and gets an
example to paste; endpoints from manifests are kept when their provider is down, as PUT
ones are; providers are checked side by side, not one after another.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
import time

from fake_providers import Reply
from local_mode import LocalMode, ServedFake, free_port, openai_embeddings, openai_fake

MANIFEST = """\
apiVersion: kubeinfer.io/v1alpha1
kind: InferenceEndpoint
metadata:
  name: {name}
spec:
  taskType: {task}
  service: {service}
  serviceSettings:
    model_id: {model}
    url: {url}
    api_key: sk-start-up-0123456789
"""


def write_manifest(folder, name: str, task: str, service: str, model: str, url: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(MANIFEST.format(name=name, task=task, service=service, model=model, url=url))


def provider_of_every_task_type():
    """OpenAI's embeddings and chat, and Jina AI's multimodal embeddings (its ``data`` list)."""
    fake = openai_fake()
    fake.on("/jina/v1/embeddings", lambda r: Reply(json={
        "model": "jina-clip-v2", "object": "list", "usage": {"total_tokens": 1, "prompt_tokens": 1},
        "data": [{"object": "embedding", "index": i, "embedding": [0.5, 0.25]} for i, _ in enumerate(r.json["input"])],
    }))
    return fake


def examples(banner: str) -> dict[str, tuple[str, dict]]:
    """The POST examples the banner prints: inference id -> (path, body)."""
    out = {}
    for line in banner.splitlines():
        if not line.strip().startswith("curl "):
            continue
        words = shlex.split(line.strip())
        if "POST" not in words or "-d" not in words:
            continue
        url = next(w for w in words if w.startswith("http://"))
        path = "/" + url.split("/", 3)[3]
        out[path] = json.loads(words[words.index("-d") + 1])
    return out


def test_every_task_type_starts_restarts_and_prints_an_example_that_works(tmp_path):
    with ServedFake(provider_of_every_task_type()) as provider:
        manifests = tmp_path / "manifests"
        write_manifest(manifests, "talk", "chat_completion", "openai", "gpt-4o-mini", f"{provider.url}/v1")
        write_manifest(manifests, "pictures", "embedding", "jinaai", "jina-clip-v2", f"{provider.url}/jina/v1")
        args = ("-f", str(manifests))
        with LocalMode(*args, state_dir=tmp_path / "state") as first:
            created = first.client.put("/_inference/chat_completion/talk-too", json={
                "service": "openai", "service_settings": {
                    "api_key": "sk-start-up-0123456789", "model_id": "gpt-4o-mini", "url": f"{provider.url}/v1"}})
            assert created.status_code == 200, created.text
            assert first.interrupt() == 0
        with LocalMode(*args, state_dir=tmp_path / "state") as second:
            printed = examples(second.text)
            assert set(printed) == {
                "/_inference/chat_completion/talk/_stream", "/_inference/chat_completion/talk-too/_stream",
                "/_inference/embedding/pictures",
            }, second.text
            for path, body in printed.items():
                answer = second.client.post(path, json=body)
                assert answer.status_code == 200, (path, answer.text)
            assert "Application startup failed" not in second.text


def test_a_manifest_endpoint_whose_provider_is_down_is_kept_listed_and_deletable(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    manifests = tmp_path / "manifests"
    write_manifest(manifests, "down", "text_embedding", "openai", "text-embedding-3-small", closed)
    with LocalMode("-f", str(manifests), state_dir=tmp_path / "state") as local:
        listed = [e["inference_id"] for e in local.client.get("/_inference").json()["endpoints"]]
        assert "down" in listed
        answer = local.client.post("/_inference/text_embedding/down", json={"input": "abc"})
        assert answer.status_code == 409, answer.text
        assert "[down] is not available" in answer.json()["error"]["reason"]
        assert "did not start" not in local.text
        assert local.client.delete("/_inference/down").status_code == 200


def test_providers_are_checked_side_by_side_at_start(tmp_path):
    fake = openai_fake()
    arrived: list[float] = []
    lock = threading.Lock()

    def slow(received):
        with lock:
            arrived.append(time.monotonic())
        return Reply(json=openai_embeddings([1.0, 0.0]), delay=1.0)

    fake.on("/v1/embeddings", slow)
    with ServedFake(fake) as provider:
        manifests = tmp_path / "manifests"
        for i in range(4):
            write_manifest(manifests, f"slow-{i}", "text_embedding", "openai", "text-embedding-3-small",
                           f"{provider.url}/v1")
        with LocalMode("-f", str(manifests), state_dir=tmp_path / "state") as local:
            assert re.search(r"slow-3\s+text_embedding", local.text)
    # Every check had reached the provider before the first one was answered.
    assert len(arrived) == 4 and max(arrived) - min(arrived) < 1.0
