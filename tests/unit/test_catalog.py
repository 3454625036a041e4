"""The service catalog accepts what Elasticsearch accepts and rejects the rest with
Elasticsearch's error type, status and reason."""

from __future__ import annotations

import json

import pytest

from catalog_cases import (
    ALL_TASK_TYPES, DEFAULT_RATE_LIMIT, EXTERNAL_PAIRS, MINIMAL, PAIRS, PLAIN_SECRET, REQUIRED, SECRET_MAPS, SECRET_SETTINGS,
    SERVICES_BY_NAME, es_body, manifest,
)
from kubeinfer.catalog import SERVICES, SecretKeyRef, from_manifest, parse_endpoint, service_task_pairs
from kubeinfer.errors import ElasticsearchError


def rejection(task: str, body: dict, inference_id: str = "my-endpoint") -> ElasticsearchError:
    with pytest.raises(ElasticsearchError) as caught:
        parse_endpoint(inference_id, task, body)
    return caught.value


def test_catalog_holds_exactly_the_documented_pairs_of_the_26_services():
    assert sorted((s, t.value) for s, t in service_task_pairs()) == PAIRS
    assert len(SERVICES_BY_NAME) == 26


@pytest.mark.parametrize("service,task", PAIRS)
def test_every_pair_is_accepted_with_minimal_settings(service, task):
    config = parse_endpoint("my-endpoint", task, es_body(service, task))
    assert (config.service, config.task_type.value, config.inference_id) == (service, task, "my-endpoint")


@pytest.mark.parametrize("service,task", PAIRS)
def test_unknown_setting_is_rejected_with_es_error(service, task):
    body = es_body(service, task)
    body["service_settings"]["not_a_setting"] = 7
    error = rejection(task, body)
    assert (error.status, error.type) == (400, "status_exception")
    assert error.reason == f"Model configuration contains settings [{{not_a_setting=7}}] unknown to the [{service}] service"


@pytest.mark.parametrize("service,task", PAIRS)
def test_unknown_task_setting_is_rejected_with_es_error(service, task):
    body = es_body(service, task)
    body.setdefault("task_settings", {})["not_a_task_setting"] = "x"
    error = rejection(task, body)
    assert (error.status, error.type) == (400, "status_exception")
    assert "[{not_a_task_setting=x}] unknown to the" in error.reason


@pytest.mark.parametrize("service,task,setting", [(s, t, r) for (s, t), rs in REQUIRED.items() for r in rs])
def test_missing_required_setting_is_rejected_with_es_error(service, task, setting):
    body = es_body(service, task)
    del body["service_settings"][setting]
    error = rejection(task, body)
    assert (error.status, error.type) == (400, "validation_exception")
    assert error.reason == f"Validation Failed: 1: [service_settings] does not contain the required setting [{setting}];"


def test_anthropic_requires_max_tokens_in_task_settings():
    body = es_body("anthropic", "completion")
    del body["task_settings"]
    error = rejection("completion", body)
    assert error.reason == "Validation Failed: 1: [task_settings] does not contain the required setting [max_tokens];"


@pytest.mark.parametrize("service", ["elasticsearch", "elser"])
def test_local_models_need_allocations_fixed_or_adaptive(service):
    task = "sparse_embedding"
    body = es_body(service, task)
    del body["service_settings"]["num_allocations"]
    error = rejection(task, body)
    assert error.type == "validation_exception"
    assert error.reason == (
        "Validation Failed: 1: [service_settings] does not contain one of the required settings "
        "[num_allocations, adaptive_allocations];"
    )
    body["service_settings"]["adaptive_allocations"] = {"enabled": True, "max_number_of_allocations": 4}
    assert parse_endpoint("e", task, body).service_settings.adaptive_allocations.enabled is True


def test_elser_defaults_its_model():
    config = parse_endpoint("e", "sparse_embedding", es_body("elser", "sparse_embedding"))
    assert config.es_view()["service_settings"]["model_id"] == ".elser_model_2"


@pytest.mark.parametrize("service,task", [(s, t) for s in SERVICES_BY_NAME for t in ALL_TASK_TYPES
                                          if (s, t) not in MINIMAL])
def test_unsupported_task_type_is_rejected_with_es_error(service, task):
    donor = next(pair for pair in PAIRS if pair[0] == service)
    error = rejection(task, es_body(*donor))
    assert (error.status, error.type) == (400, "status_exception")
    assert error.reason == f"The [{service}] service does not support task type [{task}]"


def test_unknown_service_is_rejected_with_es_error():
    error = rejection("text_embedding", {"service": "acme", "service_settings": {}}, "my-acme")
    assert (error.status, error.type, error.reason) == (400, "status_exception", "Unknown service [acme] for model [my-acme]")


def test_unknown_task_type_is_rejected_with_es_error():
    error = rejection("summarize", es_body("openai", "completion"))
    assert (error.status, error.type, error.reason) == (400, "status_exception", "Unknown task_type [summarize]")


def test_task_type_is_read_case_insensitively_as_elasticsearch_does():
    assert parse_endpoint("e", "TEXT_EMBEDDING", es_body("openai", "text_embedding")).task_type.value == "text_embedding"


@pytest.mark.parametrize("service,task", [p for p in PAIRS if p[1] not in ("text_embedding", "embedding")])
def test_embedding_only_settings_are_unknown_to_other_task_types(service, task):
    body = es_body(service, task)
    body["service_settings"]["similarity"] = "cosine"
    error = rejection(task, body)
    assert error.type == "status_exception" and "unknown to the" in error.reason


@pytest.mark.parametrize("service,provider", [("amazonbedrock", "meta"), ("azureaistudio", "databricks")])
def test_embedding_needs_a_provider_with_embedding_models(service, provider):
    body = es_body(service, "text_embedding")
    body["service_settings"]["provider"] = provider
    error = rejection("text_embedding", body)
    assert (error.status, error.type) == (400, "status_exception")
    assert error.reason == f"The [text_embedding] task type for provider [{provider}] is not available"


def test_azure_openai_takes_exactly_one_credential():
    body = es_body("azureopenai", "text_embedding")
    del body["service_settings"]["api_key"]
    assert rejection("text_embedding", body).reason == (
        "Validation Failed: 1: [secret_settings] must have either the [api_key], [entra_id] or the [client_secret] "
        "setting;"
    )
    body["service_settings"].update(api_key="k", entra_id="t")
    assert rejection("text_embedding", body).reason == (
        "Validation Failed: 1: [secret_settings] must have only one of the [api_key], [entra_id] or the "
        "[client_secret] settings;"
    )
    del body["service_settings"]["api_key"]
    assert parse_endpoint("e", "text_embedding", body).secret("entra_id") == "t"


def test_vertex_ranking_takes_no_location():
    body = es_body("googlevertexai", "rerank")
    body["service_settings"]["location"] = "us-central1"
    assert "unknown to the [googlevertexai] service" in rejection("rerank", body).reason


def test_chunking_settings_are_unknown_to_tasks_other_than_embeddings():
    error = rejection("completion", es_body("openai", "completion", chunking_settings={"strategy": "word"}))
    assert (error.status, error.type) == (400, "status_exception")
    assert error.reason == (
        "Model configuration contains settings [{chunking_settings={strategy=word}}] unknown to the [openai] service")


@pytest.mark.parametrize("chunking,expected", [
    ({}, {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1}),
    ({"strategy": "sentence", "max_chunk_size": 400}, {"strategy": "sentence", "max_chunk_size": 400,
                                                       "sentence_overlap": 1}),
    ({"strategy": "word", "max_chunk_size": 100, "overlap": 50}, {"strategy": "word", "max_chunk_size": 100,
                                                                   "overlap": 50}),
    ({"strategy": "none"}, {"strategy": "none"}),
])
def test_chunking_settings_as_elasticsearch_reads_them(chunking, expected):
    config = parse_endpoint("e", "text_embedding", es_body("openai", "text_embedding", chunking_settings=chunking))
    assert config.es_view()["chunking_settings"] == expected


@pytest.mark.parametrize("chunking,reason", [
    ({"max_chunk_size": 100}, "Can't generate Chunker without ChunkingStrategy provided"),
    ({"strategy": "word", "max_chunk_size": 100},
     "Validation Failed: 1: [chunking_settings] does not contain the required setting [overlap];"),
    ({"strategy": "word", "max_chunk_size": 100, "overlap": 51},
     "Validation Failed: 1: [chunking_settings] Invalid value [51]. [overlap] must be a less than or equal to [50];"),
    ({"strategy": "word", "max_chunk_size": 301, "overlap": 1},
     "Validation Failed: 1: [chunking_settings] Invalid value [301]. [max_chunk_size] must be a less than or equal "
     "to [300];"),
    ({"strategy": "sentence", "max_chunk_size": 250, "overlap": 10},
     "Validation Failed: 1: Sentence based chunking settings can not have the following settings: [overlap];"),
    ({"strategy": "sentence", "max_chunk_size": 10},
     "Validation Failed: 1: [chunking_settings] Invalid value [10]. [max_chunk_size] must be a greater than or "
     "equal to [20];"),
    ({"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 2},
     "Validation Failed: 1: sentence_overlap[2] must be either 0 or 1;"),
])
def test_chunking_settings_are_checked_per_strategy(chunking, reason):
    error = rejection("sparse_embedding", es_body("elser", "sparse_embedding", chunking_settings=chunking))
    assert (error.status, error.reason) == (400, reason)


@pytest.mark.parametrize("service,task", PAIRS)
def test_es_view_drops_secrets_and_fills_the_default_rate_limit(service, task):
    view = parse_endpoint("e", task, es_body(service, task)).es_view()
    assert PLAIN_SECRET not in json.dumps(view)
    assert not set(view["service_settings"]) & set(SECRET_SETTINGS)
    expected = DEFAULT_RATE_LIMIT[(service, task)]
    if expected is None:
        assert "rate_limit" not in view["service_settings"]
    else:
        assert view["service_settings"]["rate_limit"] == {"requests_per_minute": expected}
    assert {k: view[k] for k in ("inference_id", "task_type", "service")} == {
        "inference_id": "e", "task_type": task, "service": service}


@pytest.mark.parametrize("service,task", EXTERNAL_PAIRS)
def test_configured_rate_limit_wins_over_the_default(service, task):
    body = es_body(service, task)
    body["service_settings"]["rate_limit"] = {"requests_per_minute": 7}
    config = parse_endpoint("e", task, body)
    assert config.rate_limit == 7
    assert config.es_view()["service_settings"]["rate_limit"] == {"requests_per_minute": 7}


@pytest.mark.parametrize("service,task", EXTERNAL_PAIRS)
def test_url_override_is_accepted_by_every_external_service(service, task):
    body = es_body(service, task)
    body["service_settings"]["url"] = "http://127.0.0.1:8089/provider"
    config = parse_endpoint("e", task, body)
    assert config.es_view()["service_settings"]["url"] == "http://127.0.0.1:8089/provider"


@pytest.mark.parametrize("service", ["elasticsearch", "elser"])
def test_local_services_take_no_url(service):
    body = es_body(service, "sparse_embedding")
    body["service_settings"]["url"] = "http://x"
    assert rejection("sparse_embedding", body).type == "status_exception"


@pytest.mark.parametrize("service,task", PAIRS)
def test_manifest_round_trip_keeps_secret_references(service, task):
    config = from_manifest(manifest(service, task))
    refs = config.secret_refs()
    settings = MINIMAL[(service, task)]
    assert set(refs) == {k for k in settings if k in SECRET_SETTINGS} | {
        f"{k}.{name}" for k in settings if k in SECRET_MAPS for name in settings[k]}
    assert all(isinstance(ref, SecretKeyRef) for ref in refs.values())
    again = config.to_manifest(name="my-endpoint")
    assert from_manifest(again).es_view() == config.es_view()


def test_a_manifest_refuses_plain_secrets_on_the_way_out():
    config = parse_endpoint("e", "completion", es_body("openai", "completion"))
    with pytest.raises(ElasticsearchError) as caught:
        config.to_manifest()
    assert PLAIN_SECRET not in caught.value.reason


def test_every_service_declares_its_default_rate_limit_per_task_type():
    for (service, task), expected in DEFAULT_RATE_LIMIT.items():
        assert SERVICES[service].rate_limit_for(task) == expected


def test_a_pod_resolves_each_secret_parameter_from_the_variable_the_operator_sets():
    from kubeinfer.secrets import SecretResolver, secret_env_var

    config = from_manifest(manifest("custom", "text_embedding"))
    [name] = config.secret_refs()
    assert secret_env_var(name) == "KUBEINFER_SECRET_SECRET_PARAMETERS__API_KEY"
    resolved = SecretResolver("/nonexistent", environ={secret_env_var(name): "sk-from-env"}).resolve(config)
    assert resolved.secret("secret_parameters.api_key") == "sk-from-env"
    assert resolved.plain_secrets() == {"secret_parameters.api_key": resolved.secret_values()[name]}
    assert "sk-from-env" not in str(resolved.es_view())


def _enum_settings() -> list[tuple[str, str, str, str, str]]:
    """(service, task, scope, setting, one of its values) for every enum setting of the catalog."""
    out = []
    for service, task in PAIRS:
        spec = SERVICES[service]
        for scope, model in (("service_settings", spec.service_settings_model(task)),
                             ("task_settings", spec.task_settings_model(task))):
            given = es_body(service, task).get(scope) or {}
            for name, spellings in sorted(model.enum_spellings.items()):
                # The value the minimal body gives, where it gives one: some depend on others.
                value = given.get(name) or sorted(spellings.values())[-1]
                if name in model.model_fields and _accepted(service, task, scope, name, value):
                    out.append((service, task, scope, name, value))
    return out


def _accepted(service: str, task: str, scope: str, name: str, value: str) -> bool:
    body = es_body(service, task)
    body.setdefault(scope, {})[name] = value
    try:
        parse_endpoint("my-endpoint", task, body)
    except ElasticsearchError:  # a value that needs other settings beside it (vertex's provider)
        return False
    return True


ENUM_SETTINGS = _enum_settings()


def test_the_catalog_has_enum_settings_in_both_scopes():
    assert {row[2] for row in ENUM_SETTINGS} == {"service_settings", "task_settings"}
    assert ("nvidia", "text_embedding", "task_settings", "truncate", "START") in ENUM_SETTINGS


@pytest.mark.parametrize("service,task,scope,name,value", ENUM_SETTINGS,
                         ids=[f"{r[0]}-{r[1]}-{r[3]}" for r in ENUM_SETTINGS])
def test_enum_settings_are_read_in_any_case_and_shown_in_their_own(service, task, scope, name, value):
    for spelling in (value.upper(), value.lower(), f" {value.swapcase()} "):
        body = es_body(service, task)
        body.setdefault(scope, {})[name] = spelling
        view = parse_endpoint("my-endpoint", task, body).es_view()
        assert view[scope][name] == value, spelling


def test_an_unknown_enum_value_is_still_refused():
    body = es_body("nvidia", "text_embedding")
    body["task_settings"] = {"truncate": "middle"}
    error = rejection("text_embedding", body)
    assert (error.status, error.type) == (400, "validation_exception") and "truncate" in error.reason


def test_a_provider_without_models_for_the_task_is_refused_in_any_case():
    body = es_body("amazonbedrock", "text_embedding")
    body["service_settings"]["provider"] = "Meta"
    assert rejection("text_embedding", body).reason == "The [text_embedding] task type for provider [meta] is not available"


# Elasticsearch's list of default rate limits (specification, RateLimitSetting.requests_per_minute):
# service -> requests per minute, for all its task types or per task type.
SPEC_RATE_LIMITS = {
    "alibabacloud-ai-search": 1000, "amazonbedrock": 240, "anthropic": 50, "azureaistudio": 240,
    "azureopenai": {"text_embedding": 1440, "completion": 120, "chat_completion": 120},
    "cohere": 10000, "contextualai": 1000, "fireworksai": 6000, "googleaistudio": 360,
    "googlevertexai": 30000, "hugging_face": 3000, "jinaai": 2000, "llama": 3000, "mistral": 240,
    "openai": {"text_embedding": 3000, "completion": 500}, "openshift_ai": 3000, "voyageai": 2000,
    "watsonxai": 120,
}
# Where Elasticsearch's code sets a finer default than the list says: Vertex AI's ranking
# (Discovery Engine's quota) and its Model Garden chat.
FINER_IN_CODE = {("googlevertexai", "rerank"): 300, ("googlevertexai", "completion"): 1000,
                 ("googlevertexai", "chat_completion"): 1000}


@pytest.mark.parametrize("service", sorted(SPEC_RATE_LIMITS))
def test_default_rate_limits_are_the_ones_elasticsearch_lists(service):
    spec = SERVICES[service]
    listed = SPEC_RATE_LIMITS[service]
    for task in spec.task_types:
        expected = listed if isinstance(listed, int) else listed.get(task.value, spec.rate_limit_for(task))
        expected = FINER_IN_CODE.get((service, task.value), expected)
        assert spec.rate_limit_for(task) == expected, task
        assert parse_endpoint("e", task, es_body(service, task.value)).es_view()["service_settings"]["rate_limit"] == {
            "requests_per_minute": expected}
