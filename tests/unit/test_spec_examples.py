"""The create requests of Elasticsearch's specification, every one of them, copied from its
``put*/examples/request/`` (``tests/es_create_examples.json`` names the commit): the bodies
users copy from the documentation. Each must be accepted as is, shown back without its
secrets, and, with its secrets as references, be a valid InferenceEndpoint."""

from __future__ import annotations

import copy

import pytest

from catalog_cases import (
    REFUSED, SECRET_MAPS, SECRET_SETTINGS, SPEC_CREATE_EXAMPLES, SPEC_EXAMPLES, secret_ref, task_type_of,
)
from kubeinfer.catalog import from_manifest, parse_endpoint
from kubeinfer.errors import ElasticsearchError


def test_every_create_example_of_the_specification_is_accepted_but_the_known_refusals():
    assert len(SPEC_CREATE_EXAMPLES) == 99
    assert len(SPEC_EXAMPLES) == 98
    for example in SPEC_CREATE_EXAMPLES:
        if example["name"] in REFUSED:
            with pytest.raises(ElasticsearchError) as caught:
                task = task_type_of(example["task_type"])
                parse_endpoint(example["inference_id"], task, copy.deepcopy(example["body"]))
            assert REFUSED[example["name"]] in caught.value.reason


@pytest.mark.parametrize("name,task,inference_id,body", SPEC_EXAMPLES, ids=[row[0] for row in SPEC_EXAMPLES])
def test_the_specifications_example_is_accepted_and_shown_back_without_secrets(name, task, inference_id, body):
    config = parse_endpoint(inference_id, task, copy.deepcopy(body))
    view = config.es_view()
    assert (view["service"], view["task_type"]) == (body["service"], task)
    assert not set(view["service_settings"]) & set(SECRET_SETTINGS + SECRET_MAPS)
    for key, value in body["service_settings"].items():
        if key not in SECRET_SETTINGS + SECRET_MAPS:
            assert view["service_settings"][key] == value, key


@pytest.mark.parametrize("name,task,inference_id,body", SPEC_EXAMPLES, ids=[row[0] for row in SPEC_EXAMPLES])
def test_the_specifications_example_is_a_valid_resource_with_secret_references(name, task, inference_id, body):
    settings = {
        k: (secret_ref(key=k) if k in SECRET_SETTINGS else
            {n: secret_ref(key=n) for n in v} if k in SECRET_MAPS else v)
        for k, v in copy.deepcopy(body["service_settings"]).items()
    }
    spec = {"taskType": task, "service": body["service"], "serviceSettings": settings, "inferenceId": inference_id}
    if body.get("task_settings"):
        spec["taskSettings"] = body["task_settings"]
    config = from_manifest({"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
                            "metadata": {"name": inference_id.replace("_", "-")}, "spec": spec})
    assert config.plain_secrets() == {}
