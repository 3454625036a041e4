"""Elasticsearch 9's ``embedding`` task for OpenAI: strings and text ``content`` objects
in, ``{"embeddings": [...]}`` out; inputs the model cannot read are refused before any
call to the provider."""

from __future__ import annotations

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
    assert response.json()["error"]["reason"] == (
        "The [openai] service does not support [image] inputs for the [embedding] task")
    assert fake.received == []


async def test_a_content_item_without_a_value_is_a_parse_error():
    fake = FakeProvider()
    response = await post_through_server(backend(fake), {"input": {"content": {"type": "text"}}})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "x_content_parse_exception"
    assert fake.received == []
