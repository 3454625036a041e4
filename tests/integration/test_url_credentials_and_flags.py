"""Local mode refuses what a user may type but must not get: a provider URL that carries
a user name and password (a secret in plain text in the endpoint's settings, shown by
every GET, and sent to the provider beside, or instead of, the API key), and a boolean
query flag it cannot read. Through HTTP, against ``kubeinfer local`` in its own process;
the fake provider speaks OpenAI's wire format and records what it received.
"""

from __future__ import annotations

import pytest
from local_mode import LocalMode, ServedFake, openai_fake

PASSWORD = "hunter2-url-password"


@pytest.fixture(scope="module")
def provider():
    with ServedFake(openai_fake()) as served:
        yield served


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    with LocalMode(state_dir=tmp_path_factory.mktemp("url-credentials")) as running:
        yield running


def es_error(response) -> tuple[int, str, str]:
    body = response.json()
    assert body["status"] == response.status_code
    return response.status_code, body["error"]["type"], body["error"]["reason"]


@pytest.mark.parametrize("userinfo", [f"user:{PASSWORD}@", f"{PASSWORD}@", f":{PASSWORD}@"])
def test_provider_url_with_credentials_is_refused_without_echoing_them(local, provider, userinfo):
    url = provider.url.replace("http://", f"http://{userinfo}") + "/v1"
    response = local.client.put("/_inference/text_embedding/with-userinfo", json={
        "service": "openai", "service_settings": {"api_key": "sk-x", "model_id": "text-embedding-3-small", "url": url}})
    status, kind, reason = es_error(response)
    assert (status, kind) == (400, "validation_exception")
    assert "[url]" in reason
    assert PASSWORD not in response.text
    assert local.client.get("/_inference/with-userinfo").status_code == 404
    assert not provider.fake.to("/v1/embeddings")
    assert PASSWORD not in local.text and "Traceback" not in local.text


def test_custom_service_url_with_credentials_is_refused(local, provider):
    response = local.client.put("/_inference/text_embedding/custom-userinfo", json={
        "service": "custom", "service_settings": {
            "url": provider.url.replace("http://", f"http://u:{PASSWORD}@") + "/v1/embeddings",
            "request": {"content": '{"input": ${input}}'},
            "response": {"json_parser": {"text_embeddings": "$.data[*].embedding"}}}})
    assert es_error(response)[:2] == (400, "validation_exception")
    assert PASSWORD not in response.text


POLICY = {"region_policy": {"allowed_geos": ["eu"]}}


@pytest.mark.parametrize("force", ["garbage", "yes", "1", "TRUE"])
def test_region_policy_force_that_is_not_a_boolean_is_a_400(local, force):
    response = local.client.put(f"/_inference/_region_policy?force={force}", json=POLICY)
    status, kind, reason = es_error(response)
    assert (status, kind) == (400, "illegal_argument_exception")
    assert f"[{force}]" in reason
    assert local.client.get("/_inference/_region_policy").status_code == 404


@pytest.mark.parametrize("force", ["true", ""])
def test_region_policy_force_true_or_present_applies_it(local, force):
    response = local.client.put(f"/_inference/_region_policy?force={force}", json=POLICY)
    assert response.status_code == 200, response.text
    assert local.client.delete("/_inference/_region_policy").status_code == 200


@pytest.mark.parametrize("dry_run", ["ture", "yes", "True"])
def test_delete_with_a_dry_run_that_is_not_a_boolean_deletes_nothing(local, provider, dry_run):
    created = local.client.put("/_inference/text_embedding/kept", json={"service": "openai", "service_settings": {
        "api_key": "sk-x", "model_id": "text-embedding-3-small", "url": f"{provider.url}/v1"}})
    assert created.status_code in (200, 400), created.text  # 400: made by an earlier case
    response = local.client.delete(f"/_inference/kept?dry_run={dry_run}")
    status, kind, reason = es_error(response)
    assert (status, kind) == (400, "illegal_argument_exception")
    assert f"[{dry_run}]" in reason
    assert local.client.get("/_inference/kept").status_code == 200


def test_delete_with_dry_run_keeps_the_endpoint(local, provider):
    local.client.put("/_inference/text_embedding/dry", json={"service": "openai", "service_settings": {
        "api_key": "sk-x", "model_id": "text-embedding-3-small", "url": f"{provider.url}/v1"}})
    response = local.client.delete("/_inference/dry?dry_run=true")
    assert response.json() == {"acknowledged": False, "pipelines": [], "indexes": []}
    assert local.client.get("/_inference/dry").status_code == 200
    assert local.client.delete("/_inference/dry?dry_run=false").json()["acknowledged"] is True
    assert local.client.get("/_inference/dry").status_code == 404
