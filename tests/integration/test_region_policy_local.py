"""The inference region policy in local mode, through HTTP as a user calls it:
``kubeinfer local`` in its own process, Amazon Bedrock endpoints whose ``url`` points
at a fake Bedrock runtime that speaks InvokeModel's wire format and records what it
received."""

from __future__ import annotations

import pytest
from fake_providers import FakeProvider, Reply
from local_mode import LocalMode, ServedFake

TITAN = "/model/amazon.titan-embed-text-v2:0/invoke"


@pytest.fixture(scope="module")
def bedrock():
    fake = FakeProvider().on(TITAN, lambda r: Reply(json={
        "embedding": [float(len(r.json["inputText"])), 0.5], "inputTextTokenCount": 1}))
    with ServedFake(fake) as served:
        yield served


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("region-state")


@pytest.fixture(scope="module")
def local(state_dir):
    with LocalMode(state_dir=state_dir) as running:
        yield running


def bedrock_body(bedrock, region: str) -> dict:
    return {"service": "amazonbedrock", "service_settings": {
        "access_key": "AKIDEXAMPLE", "secret_key": "wJalrXUtnFEMI/K7MDENG", "region": region,
        "provider": "amazontitan", "model": "amazon.titan-embed-text-v2:0", "url": bedrock.url}}


def error_of(response):
    body = response.json()
    assert body["error"]["root_cause"][0]["type"] == body["error"]["type"]
    return response.status_code, body["error"]["type"], body["error"]["reason"]


def test_a_region_policy_is_set_enforced_and_deleted(local, bedrock):
    missing = local.client.get("/_inference/_region_policy")
    assert error_of(missing) == (404, "resource_not_found_exception", "No inference region policy is set")
    created = local.client.put("/_inference/text_embedding/eu-emb", json=bedrock_body(bedrock, "eu-west-1"))
    assert created.status_code == 200, created.text

    # The endpoint in Ireland breaks a US-only policy: refused, and nothing is stored.
    refused = local.client.put("/_inference/_region_policy", json={"region_policy": {"allowed_geos": ["us"]}})
    assert error_of(refused) == (400, "status_exception", "The region policy would deny access to inference "
                                                          "endpoints [eu-emb]; use [force=true] to apply it anyway")
    assert local.client.get("/_inference/_region_policy").status_code == 404

    forced = local.client.put("/_inference/_region_policy?force=true",
                              json={"region_policy": {"allowed_geos": ["us"]}})
    assert forced.status_code == 200, forced.text
    assert forced.json()["region_policy"] == {"allowed_geos": ["us"]}
    assert forced.json()["created_at"].endswith("Z") and "updated_at" not in forced.json()
    assert local.client.get("/_inference/_region_policy").json() == forced.json()

    # The endpoint left outside the policy answers an error and sends nothing to Ireland.
    calls = len(bedrock.fake.to(TITAN))
    denied = local.client.post("/_inference/text_embedding/eu-emb", json={"input": ["hello"]})
    assert error_of(denied) == (
        403, "status_exception", "Inference endpoint [eu-emb] uses region [eu-west-1] of [aws], which the inference "
                                 "region policy does not allow (allowed geos [us])")
    assert len(bedrock.fake.to(TITAN)) == calls

    # A new endpoint outside it is refused before any call; one inside it works.
    outside = local.client.put("/_inference/text_embedding/frankfurt", json=bedrock_body(bedrock, "eu-central-1"))
    assert error_of(outside)[:2] == (403, "status_exception")
    assert "region [eu-central-1] of [aws]" in error_of(outside)[2]
    assert len(bedrock.fake.to(TITAN)) == calls
    assert local.client.get("/_inference/frankfurt").status_code == 404
    inside = local.client.put("/_inference/text_embedding/virginia", json=bedrock_body(bedrock, "us-east-1"))
    assert inside.status_code == 200, inside.text
    answer = local.client.post("/_inference/text_embedding/virginia", json={"input": ["hello"]})
    assert answer.json() == {"text_embedding": [{"embedding": [5.0, 0.5]}]}
    # An update that moves an endpoint out of the policy is refused too.
    moved = local.client.put("/_inference/virginia/_update", json={"service_settings": {"region": "eu-west-1"}})
    assert error_of(moved)[:2] == (403, "status_exception")

    # Replacing the policy keeps when it was created and says when it was updated.
    regions = {"allowed_regions": [{"csp": "aws", "region": "us-east-1"}, {"csp": "aws", "region": "eu-west-1"}]}
    replaced = local.client.put("/_inference/_region_policy", json={"region_policy": regions})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["region_policy"] == regions
    assert replaced.json()["created_at"] == forced.json()["created_at"]
    assert replaced.json()["updated_at"] >= replaced.json()["created_at"]
    assert local.client.post("/_inference/text_embedding/eu-emb", json={"input": ["hi"]}).status_code == 200

    deleted = local.client.delete("/_inference/_region_policy")
    assert deleted.json() == {"acknowledged": True}
    assert error_of(local.client.delete("/_inference/_region_policy"))[0] == 404
    assert local.client.put("/_inference/text_embedding/frankfurt",
                            json=bedrock_body(bedrock, "eu-central-1")).status_code == 200


@pytest.mark.parametrize("body, expected", [
    ({"region_policy": {"allowed_geos": ["us"], "allowed_regions": [{"csp": "aws", "region": "us-east-1"}]}},
     (400, "status_exception", "[region_policy] must contain exactly one of [allowed_geos] or [allowed_regions]")),
    ({"region_policy": {}},
     (400, "status_exception", "[region_policy] must contain exactly one of [allowed_geos] or [allowed_regions]")),
    ({"region_policy": {"allowed_geos": ["mars"]}},
     (400, "status_exception", "Unknown geo [mars]; known geos are [us, ca, sa, eu, me, af, apac]")),
    ({"region_policy": {"allowed_regions": [{"csp": "oracle", "region": "x"}]}},
     (400, "status_exception", "Unknown cloud service provider [oracle]; known providers are [aws, gcp, azure]")),
    ({"region_policy": {"allowed_regions": [{"csp": "aws"}]}},
     (400, "x_content_parse_exception",
      "[region_policy] failed to parse field [allowed_regions.0.region]: Field required")),
    ({"allowed_geos": ["us"]}, (400, "x_content_parse_exception", "unknown field [allowed_geos]")),
])
def test_an_invalid_policy_is_refused_and_changes_nothing(local, body, expected):
    before = local.client.get("/_inference/_region_policy")
    assert error_of(local.client.put("/_inference/_region_policy", json=body)) == expected
    after = local.client.get("/_inference/_region_policy")
    assert (after.status_code, after.text) == (before.status_code, before.text)


def test_the_policy_survives_a_restart(tmp_path, bedrock):
    with LocalMode(state_dir=tmp_path) as first:
        assert first.client.put("/_inference/_region_policy",
                                json={"region_policy": {"allowed_geos": ["eu"]}}).status_code == 200
    with LocalMode(state_dir=tmp_path) as second:
        assert second.client.get("/_inference/_region_policy").json()["region_policy"] == {"allowed_geos": ["eu"]}
        refused = second.client.put("/_inference/text_embedding/ohio", json=bedrock_body(bedrock, "us-east-2"))
        assert error_of(refused)[:2] == (403, "status_exception")
    assert (tmp_path / "region_policy.json").stat().st_mode & 0o077 == 0


def test_the_official_client_sets_reads_and_deletes_the_policy(local):
    from elasticsearch import Elasticsearch, NotFoundError

    with Elasticsearch(local.url, request_timeout=30) as es:
        put = es.inference.put_region_policy(region_policy={"allowed_geos": ["us", "eu"]}, force=False)
        assert put["region_policy"] == {"allowed_geos": ["us", "eu"]}
        assert es.inference.get_region_policy().body == put.body
        assert es.inference.delete_region_policy()["acknowledged"] is True
        with pytest.raises(NotFoundError):
            es.inference.get_region_policy()
