"""Elasticsearch 9's ``embedding`` task through providers: strings and ``content`` objects
in, ``{"embeddings": [...]}`` out. OpenAI reads one text per input; Jina AI's multimodal
models read texts, images, audio, video and PDFs, alone or grouped, sent in its
documented ``/v1/embeddings`` shape. What a provider cannot read is refused, in
Elasticsearch's words, before any call to it."""

from __future__ import annotations

import pytest
from fake_providers import FakeProvider, Reply, backend_for, post_through_server

KEY = "sk-test-0123456789abcdef"


def openai_embeddings(request):
    return Reply(json={"object": "list", "model": "text-embedding-3-small", "usage": {"prompt_tokens": 2,
                       "total_tokens": 2}, "data": [{"object": "embedding", "index": i, "embedding": [float(len(t)), 0.5]}
                                                    for i, t in enumerate(request.json["input"])]})


def backend(fake):
    return backend_for(fake, "openai", "embedding", {"api_key": KEY, "model_id": "text-embedding-3-small",
                                                     "dimensions": 2, "url": "https://openai.test/v1"})


async def test_strings_and_text_contents_are_embedded_as_elasticsearch_answers():
    fake = FakeProvider().on("/v1/embeddings", openai_embeddings)
    body = {"input": [{"content": {"type": "text", "value": "abc"}},
                      {"content": {"type": "text", "format": "text", "value": "de"}}]}
    response = await post_through_server(backend(fake), body)
    assert response.status_code == 200, response.text
    assert response.json() == {"embeddings": [{"embedding": [3.0, 0.5]}, {"embedding": [2.0, 0.5]}]}
    response = await post_through_server(backend(fake), {"input": "fghi"})
    assert response.json() == {"embeddings": [{"embedding": [4.0, 0.5]}]}
    sent = [r.json for r in fake.to("/v1/embeddings")]
    assert sent == [
        {"input": ["abc", "de"], "model": "text-embedding-3-small", "encoding_format": "float", "dimensions": 2},
        {"input": ["fghi"], "model": "text-embedding-3-small", "encoding_format": "float", "dimensions": 2},
    ]


async def test_images_are_refused_by_a_text_only_model():
    fake = FakeProvider().on("/v1/embeddings", openai_embeddings)
    body = {"input": [{"content": {"type": "image", "format": "base64", "value": "data:image/jpeg;base64,AAAA"}}]}
    response = await post_through_server(backend(fake), body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "status_exception"
    assert response.json()["error"]["reason"] == "The openai service does not support embedding with non-text inputs"
    assert fake.received == []


async def test_several_texts_in_one_content_object_are_refused_by_openai_naming_the_input():
    fake = FakeProvider().on("/v1/embeddings", openai_embeddings)
    body = {"input": ["one", {"content": [{"type": "text", "value": "a"}, {"type": "text", "value": "b"}]}]}
    response = await post_through_server(backend(fake), body)
    assert response.status_code == 400
    assert response.json()["error"]["reason"] == (
        "Field [content] must contain a single item for [openai] service. "
        "[content] object with multiple items found at $.input.content[1]")
    assert fake.received == []


async def test_a_content_item_without_a_value_is_a_parse_error():
    fake = FakeProvider()
    response = await post_through_server(backend(fake), {"input": {"content": {"type": "text"}}})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "x_content_parse_exception"
    assert fake.received == []


IMAGE = "data:image/png;base64,iVBORw0KGgo="
AUDIO = "data:audio/wav;base64,UklGRg=="
VIDEO = "data:video/mp4;base64,AAAAIGZ0eXA="
PDF = "data:application/pdf;base64,JVBERi0xLjQ="


def jina_embeddings(request):
    """Jina's /v1/embeddings answer: one vector per input, in OpenAI's ``data`` list."""
    inputs = request.json["input"]
    count = len(inputs) if isinstance(inputs, list) else 1
    return Reply(json={"model": request.json["model"], "object": "list", "usage": {"total_tokens": 3},
                       "data": [{"object": "embedding", "index": i, "embedding": [float(i), 1.0]}
                                for i in range(count)]})


def jina(fake, model_id="jina-embeddings-v4", **settings):
    return backend_for(fake, "jinaai", "embedding", {"api_key": KEY, "model_id": model_id, **settings},
                       task_settings=settings.pop("task_settings", None))


def item(kind, value):
    return {"type": kind, "format": "text" if kind == "text" else "base64", "value": value}


async def test_jina_gets_each_kind_and_groups_in_its_multimodal_shape():
    fake = FakeProvider().on("/v1/embeddings", jina_embeddings)
    body = {"input": [
        "plain text",
        {"content": item("image", IMAGE)},
        {"content": [item("text", "a caption"), item("image", IMAGE)]},
        {"content": [item("audio", AUDIO), item("video", VIDEO)]},
        {"content": item("audio", AUDIO)},
    ], "input_type": "ingest"}
    response = await post_through_server(jina(fake), body)
    assert response.status_code == 200, response.text
    assert response.json() == {"embeddings": [{"embedding": [float(i), 1.0]} for i in range(5)]}
    [sent] = [r.json for r in fake.to("/v1/embeddings")]
    assert sent == {
        "model": "jina-embeddings-v4",
        "input": [
            {"text": "plain text"},
            {"image": IMAGE},
            {"content": [{"text": "a caption"}, {"image": IMAGE}]},
            {"content": [{"audio": AUDIO}, {"video": VIDEO}]},
            {"audio": AUDIO},
        ],
        "embedding_type": "float",
        "task": "retrieval.passage",
    }
    assert fake.to("/v1/embeddings")[0].headers["authorization"] == f"Bearer {KEY}"


async def test_jina_takes_a_lone_pdf_as_the_input_itself():
    fake = FakeProvider().on("/v1/embeddings", jina_embeddings)
    response = await post_through_server(jina(fake), {"input": {"content": item("pdf", PDF)}})
    assert response.status_code == 200, response.text
    assert fake.received[0].json["input"] == {"pdf": PDF}


async def test_jina_late_chunking_is_sent_false_when_inputs_are_not_all_text():
    fake = FakeProvider().on("/v1/embeddings", jina_embeddings)
    for body in ({"input": ["a", {"content": item("image", IMAGE)}]}, {"input": ["a", "b"]}):
        backend = backend_for(fake, "jinaai", "embedding", {"api_key": KEY, "model_id": "jina-embeddings-v4"},
                              task_settings={"late_chunking": True})
        assert (await post_through_server(backend, body)).status_code == 200
    assert [r.json["late_chunking"] for r in fake.received] == [False, True]


@pytest.mark.parametrize("input_type, task", [("search", "retrieval.query"), ("ingest", None)])
async def test_jina_clip_v2_gets_a_task_for_searches_only(input_type, task):
    fake = FakeProvider().on("/v1/embeddings", jina_embeddings)
    response = await post_through_server(jina(fake, "jina-clip-v2"), {"input": ["a"], "input_type": input_type})
    assert response.status_code == 200, response.text
    assert fake.received[0].json.get("task") == task
