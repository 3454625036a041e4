"""A rerank request's own ``top_n`` and ``return_documents`` (top level of the POST body,
Elasticsearch 9.2) reach every rerank service: as the provider's own fields where its API
has them (Cohere's ``top_n``, Voyage AI's ``top_k``, Hugging Face TEI's ``return_text``...),
applied to the answer where it has none, and by the local rerank model."""

from __future__ import annotations

import dataclasses

import pytest

from fake_providers import FakeProvider, Reply, backend_for, post_through_server
from test_provider_matrix import CASES as MATRIX_CASES
from test_provider_services import CASES as SERVICE_CASES

# Service -> what its provider's request carries for {"top_n": 1, "return_documents": true}.
WIRE = {
    "alibabacloud-ai-search": {},
    "azureaistudio": {"top_n": 1, "return_documents": True},
    "cohere": {"top_n": 1, "return_documents": True},
    "contextualai": {"top_n": 1},
    "hugging_face": {"top_n": 1, "return_text": True},
    "jinaai": {"top_n": 1, "return_documents": True},
    "nvidia": {},
    "openshift_ai": {"top_n": 1, "return_documents": True},
    "voyageai": {"top_k": 1, "return_documents": True},
}
RERANK_CASES = {key[0]: case for key, case in {**MATRIX_CASES, **SERVICE_CASES}.items()
                if key[1:] == ("rerank",) and key[0] in WIRE and not isinstance(case, str)}


def test_every_rerank_service_with_a_fake_is_covered():
    assert set(RERANK_CASES) == set(WIRE)


@pytest.mark.parametrize("service", sorted(WIRE))
async def test_top_level_top_n_and_return_documents_reach_the_provider(service):
    case = dataclasses.replace(RERANK_CASES[service], task_settings=None)
    fake = FakeProvider().on(case.path, Reply(json=case.reply))
    backend = backend_for(fake, service, "rerank", case.service_settings)
    response = await post_through_server(backend, {"input": case.input, "query": case.query or "which",
                                                   "top_n": 1, "return_documents": True})
    assert response.status_code == 200, response.text
    [received] = fake.received
    sent = {k: v for k, v in received.json.items() if k in ("top_n", "top_k", "return_documents", "return_text")}
    assert sent == WIRE[service]
    ranked = response.json()["rerank"]
    if not WIRE[service]:  # no field of the provider's own: the answer is cut here
        assert len(ranked) == 1
    assert ranked[0]["index"] == 1 and ranked[0]["text"] == "world"


@pytest.mark.parametrize("service", ["alibabacloud-ai-search", "nvidia", "contextualai"])
async def test_return_documents_false_leaves_the_texts_out(service):
    case = dataclasses.replace(RERANK_CASES[service], task_settings=None)
    fake = FakeProvider().on(case.path, Reply(json=case.reply))
    backend = backend_for(fake, service, "rerank", case.service_settings)
    response = await post_through_server(backend, {"input": case.input, "query": "which",
                                                   "return_documents": False})
    assert response.status_code == 200, response.text
    assert all("text" not in item for item in response.json()["rerank"])


@pytest.mark.parametrize("service", ["voyageai", "nvidia", "cohere"])
@pytest.mark.parametrize("field, value, reason", [
    ("top_n", "two", "[cluster:internal/xpack/inference] failed to parse field [top_n]"),
    ("top_n", True, "[cluster:internal/xpack/inference] failed to parse field [top_n]"),
    ("return_documents", "yes", "[cluster:internal/xpack/inference] failed to parse field [return_documents]"),
    ("top_n", 0, "Validation Failed: 1: Field [top_n] must be greater than or equal to 1;"),
])
async def test_a_top_n_or_return_documents_elasticsearch_cannot_read_is_refused_before_the_provider(
        service, field, value, reason):
    # Whether or not the service's task settings have a field of that name: a Voyage AI
    # request must not carry a top_k of "two", nor an NVIDIA answer be cut at "two".
    case = dataclasses.replace(RERANK_CASES[service], task_settings=None)
    fake = FakeProvider().on(case.path, Reply(json=case.reply))
    backend = backend_for(fake, service, "rerank", case.service_settings)
    response = await post_through_server(backend, {"input": case.input, "query": "which", field: value})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["reason"] == reason
    assert fake.received == []
