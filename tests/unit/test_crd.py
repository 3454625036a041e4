"""The InferenceEndpoint CRD: generated output equals the committed file, the schema is
structural, and its CEL rules, evaluated with cel-python, accept and reject what the
catalog accepts and rejects."""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from jsonschema import Draft4Validator

from catalog_cases import (
    ALL_TASK_TYPES, MINIMAL, PAIRS, REQUIRED, SECRET_SETTINGS, SERVICES_BY_NAME, manifest, secret_ref,
)
from kubeinfer.admission import rule_problems
from kubeinfer.cel_rules import evaluate
from kubeinfer.crd import build_crd
from kubeinfer.catalog import from_manifest
from kubeinfer.cli import main
from kubeinfer.errors import ElasticsearchError
from kubeinfer.structural import cel_undefined_fields

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "inferenceendpoints.kubeinfer.io.yaml"
CRD = build_crd()
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
SPEC = SCHEMA["properties"]["spec"]
ENV = celpy.Environment()
# Rules run as Kubernetes binds them (``self``, ``oldSelf``), by the evaluator validate uses.
cel = evaluate


def spec_rule_failures(spec: dict[str, Any], *, containing: str = "") -> list[str]:
    """Messages of the spec-level rules that ``spec`` breaks (only those whose message
    contains ``containing``, when given).

    A rule of the form ``self.service != 'other' || ...`` holds for any spec of another
    service, so it is not evaluated: cel-python is slow, and the answer is known.
    """
    failures = []
    for rule in SPEC["x-kubernetes-validations"]:
        text = rule["rule"]
        if text.startswith("self.service != ") and not text.startswith(f"self.service != '{spec['service']}' "):
            continue
        if containing not in rule.get("messageExpression", rule.get("message", "")):
            continue
        if not cel(text, spec):
            failures.append(str(cel(rule["messageExpression"], spec)) if "messageExpression" in rule else rule["message"])
    return failures


def catalog_rejects(obj: dict[str, Any]) -> ElasticsearchError | None:
    try:
        from_manifest(obj)
    except ElasticsearchError as exc:
        return exc
    return None


@lru_cache(maxsize=1)
def strict_validator() -> Draft4Validator:
    """The schema as kubectl's strict field validation applies it: unknown fields rejected."""
    schema = copy.deepcopy(SCHEMA)

    def close(node: dict[str, Any]) -> None:
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for child in (node.get("properties") or {}).values():
            close(child)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                close(node[key])

    close(schema)
    return Draft4Validator(schema)


# ---- the generated file --------------------------------------------------------------
def test_committed_crd_equals_kubeinfer_crds_output(capsys):
    assert main(["crds"]) == 0
    printed = capsys.readouterr().out
    assert printed == CRD_FILE.read_text(), "run `make crds` and commit the result"
    assert yaml.safe_load(printed) == CRD


def test_crd_names_scope_and_subresources():
    spec = CRD["spec"]
    assert CRD["metadata"]["name"] == "inferenceendpoints.kubeinfer.io"
    assert (spec["group"], spec["scope"]) == ("kubeinfer.io", "Namespaced")
    assert spec["names"]["kind"] == "InferenceEndpoint"
    assert spec["names"]["shortNames"] == ["ie"]
    assert (VERSION["name"], VERSION["served"], VERSION["storage"]) == ("v1alpha1", True, True)
    assert VERSION["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in VERSION["additionalPrinterColumns"]}
    assert columns["Task"] == ".spec.taskType"
    assert columns["Service"] == ".spec.service"
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Age"] == ".metadata.creationTimestamp"
    # the replica count, 0 when scaled to zero
    assert (columns["Replicas"], columns["Available"]) == (".status.replicas", ".status.readyReplicas")


def _assert_structural(node: dict[str, Any], path: str) -> None:
    for banned in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "default", "title", "nullable"):
        assert banned not in node, f"{path} has {banned}"
    assert node.get("additionalProperties") is not False, path
    assert not ("properties" in node and "additionalProperties" in node), path
    assert node.get("type") or node.get("x-kubernetes-int-or-string") or node.get(
        "x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
    for name, child in (node.get("properties") or {}).items():
        _assert_structural(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            _assert_structural(node[key], f"{path}.{key}")


def test_schema_is_structural():
    _assert_structural(SCHEMA, "openAPIV3Schema")
    Draft4Validator.check_schema(SCHEMA)


def test_spec_fields_and_enums_come_from_the_catalog():
    props = SPEC["properties"]
    assert set(props) == {"taskType", "inferenceId", "service", "serviceSettings", "taskSettings",
                          "chunkingSettings", "deployment"}
    assert set(props["taskType"]["enum"]) == set(ALL_TASK_TYPES)
    assert props["service"]["enum"] == SERVICES_BY_NAME
    assert set(props["deployment"]["properties"]) == {
        "replicas", "image", "resources", "nodeSelector", "tolerations", "affinity", "env", "annotations",
        "runtime", "quantization"}
    every_setting = {k for settings in MINIMAL.values() for k in settings}
    assert every_setting <= set(props["serviceSettings"]["properties"])


def test_status_schema_has_conditions_and_what_the_model_reports():
    status = SCHEMA["properties"]["status"]["properties"]
    assert set(status) == {"conditions", "observedGeneration", "url", "readyReplicas", "replicas", "dimensions",
                           "similarity"}
    condition = status["conditions"]["items"]
    assert set(condition["properties"]) == {
        "type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in condition["required"]
    assert condition["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def _rules(node: dict[str, Any]):
    yield from node.get("x-kubernetes-validations", ())
    for child in (node.get("properties") or {}).values():
        yield from _rules(child)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from _rules(node[key])


def test_every_rule_and_message_expression_compiles():
    rules = list(_rules(SCHEMA))
    assert len(rules) > 27
    for rule in rules:
        ENV.compile(rule["rule"])
        if "messageExpression" in rule:
            ENV.compile(rule["messageExpression"])
        assert "message" in rule or "messageExpression" in rule


def test_every_field_a_rule_reads_has_a_type_in_kubernetes_cel():
    """kube-apiserver leaves a field with no CEL type (say a map of values of several
    types) out of its object's type, and refuses the whole CRD when a rule reads it."""
    assert cel_undefined_fields(SCHEMA) == []


def test_a_map_of_mixed_values_is_kept_whole_and_stays_readable_by_rules():
    parameters = SCHEMA["properties"]["spec"]["properties"]["taskSettings"]["properties"]["parameters"]
    assert parameters == {**parameters, "type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert "additionalProperties" not in parameters
    untyped_map = {"type": "object", "properties": {"p": {
        "type": "object", "additionalProperties": {"x-kubernetes-preserve-unknown-fields": True}}},
        "x-kubernetes-validations": [{"rule": "!has(self.p) || self.p.size() < 3"}]}
    assert cel_undefined_fields(untyped_map) == [(".", "p")]


# ---- CEL rules against good and bad objects --------------------------------------------
@pytest.mark.parametrize("service,task", PAIRS)
def test_minimal_manifest_of_every_pair_passes_schema_and_rules(service, task):
    obj = manifest(service, task)
    assert list(strict_validator().iter_errors(obj)) == []
    assert rule_problems(obj) == []


@pytest.mark.parametrize("service,task", [(s, t) for s in SERVICES_BY_NAME for t in ALL_TASK_TYPES
                                          if (s, t) not in MINIMAL])
def test_rule_rejects_unsupported_pair_with_es_message(service, task):
    donor = next(pair for pair in PAIRS if pair[0] == service)
    spec = manifest(*donor)["spec"] | {"taskType": task}
    assert f"The [{service}] service does not support task type [{task}]" in spec_rule_failures(spec)


def _value_for(schema: dict[str, Any]) -> Any:
    if "secretKeyRef" in (schema.get("properties") or {}):
        return secret_ref()
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("pattern", "").startswith("^(?i:"):  # an enum in any case: its first value
        return re.split(r"(?<!\\)\|", schema["pattern"][5:-2])[0].replace("\\", "")
    return {"string": "x", "integer": 1, "number": 0.5, "boolean": True, "object": {}}.get(schema.get("type"), "x")


@pytest.mark.parametrize("service,task", PAIRS)
def test_settings_unknown_to_a_pair_are_rejected_by_rules_and_catalog(service, task):
    union = SPEC["properties"]["serviceSettings"]["properties"]
    accepted = set(manifest(service, task)["spec"]["serviceSettings"])
    config_fields = set(type(from_manifest(manifest(service, task)).service_settings).model_fields)
    for name in sorted(set(union) - config_fields):
        obj = manifest(service, task)
        obj["spec"]["serviceSettings"][name] = _value_for(union[name])
        failures = spec_rule_failures(obj["spec"], containing="accepts only")
        assert failures == [f"[service_settings] of the [{service}] service for task type [{task}] accepts only "
                            f"[{', '.join(sorted(config_fields))}]"], name
        error = catalog_rejects(obj)
        assert error is not None and "unknown to the" in error.reason, name
    # and every setting the catalog knows for the pair is allowed by the rules
    for name in sorted(config_fields - accepted):
        obj = manifest(service, task)
        obj["spec"]["serviceSettings"][name] = _value_for(union[name])
        assert spec_rule_failures(obj["spec"], containing="accepts only") == [], name


@pytest.mark.parametrize("service,task", PAIRS)
def test_task_settings_unknown_to_a_pair_are_rejected_by_rules_and_catalog(service, task):
    union = SPEC["properties"]["taskSettings"]["properties"]
    known = set(type(from_manifest(manifest(service, task)).task_settings).model_fields)
    for name in sorted(set(union) - known):
        obj = manifest(service, task)
        obj["spec"].setdefault("taskSettings", {})[name] = _value_for(union[name])
        assert spec_rule_failures(obj["spec"], containing="accepts only") == [
            f"[task_settings] of the [{service}] service for task type [{task}] accepts only "
            f"[{', '.join(sorted(known)) or 'no settings'}]"], name
        assert "unknown to the" in catalog_rejects(obj).reason, name
    for name in sorted(known):
        obj = manifest(service, task)
        obj["spec"].setdefault("taskSettings", {})[name] = _value_for(union[name])
        assert spec_rule_failures(obj["spec"], containing="accepts only") == [], name


@pytest.mark.parametrize("service", SERVICES_BY_NAME)
def test_rules_guarded_by_another_service_hold(service):
    # kubeinfer validate (and spec_rule_failures above) skip them: this is why that is exact.
    spec = manifest(*next(p for p in PAIRS if p[0] == service))["spec"]
    spec["serviceSettings"] = {}  # even settings that break every rule of this service
    others = [r["rule"] for r in SPEC["x-kubernetes-validations"]
              if r["rule"].startswith("self.service != ") and not r["rule"].startswith(f"self.service != '{service}' ")]
    assert others and all(cel(rule, spec) for rule in others)


@pytest.mark.parametrize("service,task,setting", [(s, t, r) for (s, t), rs in REQUIRED.items() for r in rs])
def test_rule_names_the_missing_required_setting_as_elasticsearch_does(service, task, setting):
    obj = manifest(service, task)
    del obj["spec"]["serviceSettings"][setting]
    message = f"[service_settings] does not contain the required setting [{setting}]"
    assert spec_rule_failures(obj["spec"], containing="required setting [") == [message]
    assert message in catalog_rejects(obj).reason


def test_rules_require_anthropic_max_tokens_and_allocations_of_local_models():
    obj = manifest("anthropic", "completion")
    del obj["spec"]["taskSettings"]
    assert "[task_settings] does not contain the required setting [max_tokens]" in spec_rule_failures(obj["spec"])
    obj = manifest("elasticsearch", "text_embedding")
    del obj["spec"]["serviceSettings"]["num_allocations"]
    assert ("[service_settings] does not contain one of the required settings [num_allocations, adaptive_allocations]"
            in spec_rule_failures(obj["spec"]))
    obj["spec"]["serviceSettings"]["adaptive_allocations"] = {"enabled": True}
    assert spec_rule_failures(obj["spec"]) == []


def test_rules_want_exactly_one_azure_openai_credential():
    obj = manifest("azureopenai", "completion")
    del obj["spec"]["serviceSettings"]["api_key"]
    assert any("one of the required settings [api_key, entra_id, client_secret]" in f
               for f in spec_rule_failures(obj["spec"]))
    obj["spec"]["serviceSettings"]["entra_id"] = secret_ref(key="entra-id")
    assert spec_rule_failures(obj["spec"]) == []
    obj["spec"]["serviceSettings"]["api_key"] = secret_ref()
    assert any("only one of the settings [api_key, entra_id, client_secret]" in f
               for f in spec_rule_failures(obj["spec"]))


@pytest.mark.parametrize("service,exchange", [("openai", "token_url"), ("azureopenai", "tenant_id")])
def test_rules_want_client_credentials_whole(service, exchange):
    obj = manifest(service, "text_embedding")
    settings = obj["spec"]["serviceSettings"]
    del settings["api_key"]
    settings.update(client_id="app", client_secret=secret_ref(key="client-secret"), scopes=["s/.default"])
    group = ", ".join(["client_id", "client_secret", "scopes", exchange])
    assert spec_rule_failures(obj["spec"]) == [
        f"[service_settings] must have all of the settings [{group}] or none of them"]
    assert "or none of them" in catalog_rejects(obj).reason
    settings[exchange] = "https://login.example/token" if exchange == "token_url" else "my-tenant"
    assert spec_rule_failures(obj["spec"]) == [] and catalog_rejects(obj) is None


@pytest.mark.parametrize("service,provider", [("amazonbedrock", "meta"), ("azureaistudio", "databricks")])
def test_rules_restrict_embedding_providers(service, provider):
    obj = manifest(service, "text_embedding")
    obj["spec"]["serviceSettings"]["provider"] = provider
    assert list(strict_validator().iter_errors(obj)) == []  # a provider the schema knows...
    assert any("[provider]" in f for f in spec_rule_failures(obj["spec"]))  # ...not for this task
    obj = manifest(service, "completion")
    obj["spec"]["serviceSettings"]["provider"] = provider
    assert spec_rule_failures(obj["spec"]) == []


def test_rules_reject_task_settings_of_another_service():
    obj = manifest("openai", "completion", taskSettings={"max_tokens": 5})
    assert any("[task_settings] of the [openai] service" in f for f in spec_rule_failures(obj["spec"]))
    assert catalog_rejects(obj) is not None


CHUNKING = SPEC["properties"]["chunkingSettings"]


def chunking_failures(settings: dict[str, Any]) -> list[str]:
    failures = []
    for rule in CHUNKING["x-kubernetes-validations"]:
        if not cel(rule["rule"], settings):
            failures.append(str(cel(rule["messageExpression"], settings)) if "messageExpression" in rule
                            else rule["message"])
    return failures


@pytest.mark.parametrize("settings", [
    {}, {"strategy": "none"}, {"strategy": "sentence", "max_chunk_size": 250},
    {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 0},
    {"strategy": "word", "max_chunk_size": 100, "overlap": 50},
])
def test_chunking_rules_accept_what_elasticsearch_accepts(settings):
    assert chunking_failures(settings) == []
    assert catalog_rejects(manifest("elser", "sparse_embedding", chunkingSettings=settings)) is None


@pytest.mark.parametrize("settings,message", [
    ({"max_chunk_size": 100}, "Can't generate Chunker without ChunkingStrategy provided"),
    ({"strategy": "word", "max_chunk_size": 100}, "[chunking_settings] does not contain the required setting [overlap]"),
    ({"strategy": "word", "overlap": 5}, "[chunking_settings] does not contain the required setting [max_chunk_size]"),
    ({"strategy": "sentence", "max_chunk_size": 250, "overlap": 5},
     "[sentence] chunking settings take only [strategy, max_chunk_size, sentence_overlap]"),
    ({"strategy": "none", "max_chunk_size": 250}, "[none] chunking settings take only [strategy]"),
    ({"strategy": "word", "max_chunk_size": 100, "overlap": 51},
     "[chunking_settings] [overlap] must be a less than or equal to half of [max_chunk_size]"),
    ({"strategy": "word", "max_chunk_size": 301, "overlap": 5},
     "[chunking_settings] [max_chunk_size] must be a less than or equal to [300] for word chunking"),
    ({"strategy": "sentence", "max_chunk_size": 19},
     "[chunking_settings] [max_chunk_size] must be a greater than or equal to [20] for sentence chunking"),
])
def test_chunking_rules_reject_what_elasticsearch_rejects(settings, message):
    assert chunking_failures(settings) == [message]
    assert catalog_rejects(manifest("elser", "sparse_embedding", chunkingSettings=settings)) is not None


def test_rule_rejects_chunking_settings_for_completion():
    obj = manifest("openai", "completion", chunkingSettings={"strategy": "sentence"})
    assert "[chunking_settings] are not supported for task type [completion]" in spec_rule_failures(obj["spec"])


SECRET_MESSAGE = "secrets are given as {secretKeyRef: {name, key}}, never in plain text"


@pytest.mark.parametrize("service,task", PAIRS)
def test_plain_text_secrets_are_rejected(service, task):
    secrets = [k for k in manifest(service, task)["spec"]["serviceSettings"] if k in SECRET_SETTINGS]
    union = SPEC["properties"]["serviceSettings"]["properties"]
    for name in secrets:
        obj = manifest(service, task)
        obj["spec"]["serviceSettings"][name] = "sk-plain-text"
        errors = list(strict_validator().iter_errors(obj))
        assert [list(e.absolute_path) for e in errors] == [["spec", "serviceSettings", name]]
        # an object without the reference breaks the field's own rule
        [rule] = union[name]["x-kubernetes-validations"]
        assert rule["message"] == SECRET_MESSAGE
        assert not cel(rule["rule"], {})
        assert cel(rule["rule"], secret_ref())


def test_each_value_of_a_map_of_secrets_must_be_a_reference():
    obj = manifest("custom", "text_embedding")
    obj["spec"]["serviceSettings"]["secret_parameters"]["api_key"] = "sk-plain-text"
    errors = list(strict_validator().iter_errors(obj))
    assert [list(e.absolute_path) for e in errors] == [["spec", "serviceSettings", "secret_parameters", "api_key"]]
    values = SPEC["properties"]["serviceSettings"]["properties"]["secret_parameters"]["additionalProperties"]
    [rule] = values["x-kubernetes-validations"]
    assert rule["message"] == SECRET_MESSAGE
    assert not cel(rule["rule"], {})
    assert cel(rule["rule"], secret_ref())


def test_secret_rule_is_applied_where_the_secret_sits():
    obj = manifest("amazonbedrock", "text_embedding")
    obj["spec"]["serviceSettings"]["secret_key"] = {}
    assert rule_problems(obj) == [("spec.serviceSettings.secret_key", SECRET_MESSAGE)]


def test_inference_id_is_immutable():
    old = manifest("openai", "completion", inferenceId="first-id")
    new = copy.deepcopy(old)
    assert rule_problems(new, old) == []
    new["spec"]["inferenceId"] = "second-id"
    problems = rule_problems(new, old)
    assert ("spec.inferenceId", "inferenceId is immutable") in problems
    assert cel("self == oldSelf", "second-id", "first-id") == celpy.celtypes.BoolType(False)


def test_inference_id_cannot_change_by_adding_or_removing_it():
    named = manifest("openai", "completion", name="my-endpoint")
    explicit_same = manifest("openai", "completion", name="my-endpoint", inferenceId="my-endpoint")
    explicit_other = manifest("openai", "completion", name="my-endpoint", inferenceId="other-id")
    assert rule_problems(explicit_same, named) == []
    assert rule_problems(named, explicit_same) == []
    message = "spec.inferenceId is immutable (it defaults to metadata.name)"
    assert ("<root>", message) in rule_problems(explicit_other, named)
    assert ("<root>", message) in rule_problems(named, explicit_other)


def test_deployment_overrides_validate():
    obj = manifest("elasticsearch", "text_embedding", deployment={
        "replicas": 2, "image": "registry.example/kubeinfer-server:1",
        "resources": {"limits": {"nvidia.com/gpu": 1, "memory": "8Gi"}},
        "nodeSelector": {"gpu": "a100"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}}, "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}],
        "annotations": {"prometheus.io/scrape": "true"},
    })
    assert list(strict_validator().iter_errors(obj)) == []
    obj["spec"]["deployment"]["replicas"] = -1
    assert [e.validator for e in strict_validator().iter_errors(obj)] == ["minimum"]


def test_enum_settings_are_taken_in_any_letter_case_as_elasticsearch_reads_them():
    obj = manifest("nvidia", "text_embedding")
    obj["spec"]["taskSettings"] = {"input_type": "Ingest", "truncate": "start"}
    obj["spec"]["serviceSettings"]["similarity"] = "COSINE"
    assert list(strict_validator().iter_errors(obj)) == [] and rule_problems(obj) == []
    config = from_manifest(obj)
    assert (config.task_settings.truncate, config.service_settings.similarity) == ("START", "cosine")
    obj["spec"]["taskSettings"]["truncate"] = "half"
    assert [e.validator for e in strict_validator().iter_errors(obj)] == ["pattern"]


def test_a_narrower_provider_list_holds_in_any_letter_case():
    obj = manifest("amazonbedrock", "text_embedding")
    obj["spec"]["serviceSettings"]["provider"] = "AmazonTitan"
    assert list(strict_validator().iter_errors(obj)) == [] and spec_rule_failures(obj["spec"]) == []
    obj["spec"]["serviceSettings"]["provider"] = "Meta"
    assert any("must be one of" in f for f in spec_rule_failures(obj["spec"]))
