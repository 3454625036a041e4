"""``kubeinfer validate``: offline checks of InferenceEndpoint manifests, one line per
problem, the exit status telling whether there was any."""

from __future__ import annotations

import io
import json
from pathlib import Path

import yaml

from catalog_cases import manifest, secret_ref
from kubeinfer.cli import main


def write(path: Path, *documents: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def validate(capsys, *paths) -> tuple[int, list[str]]:
    code = main(["validate", *map(str, paths)])
    return code, capsys.readouterr().out.splitlines()


def test_valid_manifests_pass_with_one_ok_line(tmp_path, capsys):
    write(tmp_path / "a.yaml", manifest("openai", "text_embedding", name="a"))
    write(tmp_path / "nested" / "b.yml", manifest("cohere", "rerank", name="b"),
          manifest("elser", "sparse_embedding", name="c"))
    code, lines = validate(capsys, tmp_path)
    assert (code, lines) == (0, ["OK: 3 InferenceEndpoint manifest(s) in 2 file(s)"])


def test_each_problem_is_one_line_with_file_and_path(tmp_path, capsys):
    bad_pair = manifest("openai", "text_embedding", name="bad-pair")
    bad_pair["spec"]["taskType"] = "rerank"
    missing = manifest("mistral", "text_embedding", name="missing")
    del missing["spec"]["serviceSettings"]["model"]
    unknown = manifest("openai", "completion", name="unknown")
    unknown["spec"]["serviceSettings"]["temperature"] = 1
    good = manifest("openai", "completion", name="good")
    path = write(tmp_path / "endpoints.yaml", bad_pair, missing, unknown, good)
    code, lines = validate(capsys, path)
    assert code == 1
    assert lines == [
        f"{path}#1: spec: The [openai] service does not support task type [rerank]",
        f"{path}#2: spec: [service_settings] does not contain the required setting [model]",
        f"{path}#3: spec.serviceSettings: unknown field: temperature",
    ]


def test_catalog_rules_beyond_the_schema_are_checked(tmp_path, capsys):
    # top_k is a number in the CRD (Bedrock's is a float) but an integer for Anthropic.
    obj = manifest("anthropic", "completion")
    obj["spec"]["taskSettings"]["top_k"] = 0.5
    code, lines = validate(capsys, write(tmp_path / "e.yaml", obj))
    assert code == 1
    assert len(lines) == 1
    assert lines[0].startswith(f"{tmp_path / 'e.yaml'}: spec: Validation Failed: 1: [task_settings] Invalid value "
                               "for [top_k]")


def test_a_plain_text_secret_is_reported_without_echoing_it(tmp_path, capsys):
    obj = manifest("openai", "completion")
    obj["spec"]["serviceSettings"]["api_key"] = "sk-do-not-print-me"
    code, lines = validate(capsys, write(tmp_path / "e.yaml", obj))
    assert code == 1
    assert lines == [f"{tmp_path / 'e.yaml'}: spec.serviceSettings.api_key: must be of type object"]
    obj["spec"]["serviceSettings"]["api_key"] = {"value": "sk-do-not-print-me"}
    code, lines = validate(capsys, write(tmp_path / "e.yaml", obj))
    assert code == 1 and "sk-do-not-print-me" not in "\n".join(lines)


def test_other_kinds_are_skipped_so_a_kustomize_folder_validates(tmp_path, capsys):
    write(tmp_path / "kustomization.yaml", {"apiVersion": "kustomize.config.k8s.io/v1beta1",
                                            "kind": "Kustomization", "resources": ["endpoint.yaml"]})
    write(tmp_path / "endpoint.yaml",
          {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openai"}, "stringData": {"api-key": "x"}},
          manifest("openai", "completion"))
    code, lines = validate(capsys, tmp_path)
    assert (code, lines) == (0, ["OK: 1 InferenceEndpoint manifest(s) in 2 file(s)"])


def test_json_manifests_are_read(tmp_path, capsys):
    (tmp_path / "e.json").write_text(json.dumps(manifest("openai", "completion")))
    assert validate(capsys, tmp_path / "e.json") == (0, ["OK: 1 InferenceEndpoint manifest(s) in 1 file(s)"])


def test_unreadable_input_is_a_problem(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("spec: [unclosed\n")
    code, lines = validate(capsys, tmp_path / "broken.yaml")
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith(f"{tmp_path / 'broken.yaml'}: <file>: invalid YAML at line")
    code, lines = validate(capsys, tmp_path / "nowhere.yaml")
    assert (code, lines) == (1, [f"{tmp_path / 'nowhere.yaml'}: <file>: no such file or directory"])


def test_invalid_inference_id_and_deployment_are_reported(tmp_path, capsys):
    obj = manifest("openai", "completion", inferenceId="Not_Valid!", deployment={"replicas": "two"})
    code, lines = validate(capsys, write(tmp_path / "e.yaml", obj))
    assert code == 1
    assert sorted(line.split(": ", 2)[1] for line in lines) == ["spec.deployment.replicas", "spec.inferenceId"]


def test_secret_reference_must_name_secret_and_key(tmp_path, capsys):
    obj = manifest("openai", "completion")
    obj["spec"]["serviceSettings"]["api_key"] = secret_ref()
    del obj["spec"]["serviceSettings"]["api_key"]["secretKeyRef"]["key"]
    code, lines = validate(capsys, write(tmp_path / "e.yaml", obj))
    assert (code, lines) == (1, [f"{tmp_path / 'e.yaml'}: spec.serviceSettings.api_key.secretKeyRef: "
                                 "required field missing: key"])


def test_standard_input_is_read_for_a_dash(monkeypatch, capsys):
    good, bad = manifest("openai", "completion", name="good"), manifest("cohere", "rerank", name="bad")
    bad["spec"]["taskSettings"] = {"top_n": 0}
    monkeypatch.setattr("sys.stdin", io.StringIO(yaml.safe_dump_all([good, bad])))
    code, lines = validate(capsys, "-")
    assert (code, lines) == (1, ["<stdin>#2: spec.taskSettings.top_n: must be at least 1"])


def test_an_inference_endpoint_of_another_version_is_a_problem(tmp_path, capsys):
    obj = manifest("openai", "completion") | {"apiVersion": "kubeinfer.io/v1"}
    code, lines = validate(capsys, write(tmp_path / "e.yaml", obj))
    assert (code, lines) == (1, [f"{tmp_path / 'e.yaml'}: apiVersion: must be kubeinfer.io/v1alpha1"])


def test_a_bad_name_does_not_hide_the_specs_problems(tmp_path, capsys):
    obj = manifest("openai", "text_embedding", name="Bad_Name")
    obj["spec"]["serviceSettings"]["modle_id"] = obj["spec"]["serviceSettings"].pop("model_id")
    path = write(tmp_path / "e.yaml", obj)
    code, lines = validate(capsys, path)
    assert code == 1
    assert [line.split(": ", 2)[1] for line in lines][:2] == ["metadata.name", "spec.serviceSettings"]
    assert lines[1] == f"{path}: spec.serviceSettings: unknown field: modle_id (did you mean model_id?)"


def test_a_misspelled_field_does_not_hide_a_rules_problem(tmp_path, capsys):
    # `dimension` is no field of any service; `region` is one (Bedrock's), but not OpenAI's.
    obj = manifest("openai", "text_embedding")
    obj["spec"]["serviceSettings"] |= {"dimension": 3, "region": "us-east-1"}
    path = write(tmp_path / "e.yaml", obj)
    code, lines = validate(capsys, path)
    assert code == 1 and len(lines) == 2
    assert lines[0] == f"{path}: spec.serviceSettings: unknown field: dimension (did you mean dimensions?)"
    assert lines[1].startswith(f"{path}: spec: [service_settings] of the [openai] service for task type "
                               "[text_embedding] accepts only [")


def test_an_unknown_service_gets_the_closest_name(tmp_path, capsys):
    obj = manifest("openai", "completion")
    obj["spec"]["service"] = "opneai"
    obj["spec"]["taskSetings"] = obj["spec"].pop("taskSettings", {})
    code, lines = validate(capsys, write(tmp_path / "e.yaml", obj))
    assert code == 1
    messages = [line.split(": ", 2)[1:] for line in lines]
    assert ["spec", "unknown field: taskSetings (did you mean taskSettings?)"] in messages
    service = next(message for where, message in messages if where == "spec.service")
    assert service.startswith("unknown value (did you mean openai?): must be one of [ai21, ")
    assert "opneai" not in service  # values are never echoed


def test_an_unknown_name_far_from_every_field_gets_no_suggestion(tmp_path, capsys):
    obj = manifest("openai", "completion")
    obj["spec"]["serviceSettings"]["zzzzzz"] = 1
    code, lines = validate(capsys, write(tmp_path / "e.yaml", obj))
    assert (code, lines) == (1, [f"{tmp_path / 'e.yaml'}: spec.serviceSettings: unknown field: zzzzzz"])


def test_the_inference_id_rule_is_said_in_words(tmp_path, capsys):
    obj = manifest("openai", "completion", inferenceId="Not_Valid!")
    code, lines = validate(capsys, write(tmp_path / "e.yaml", obj))
    assert (code, lines) == (1, [
        f"{tmp_path / 'e.yaml'}: spec.inferenceId: must be 1 to 253 lowercase letters, digits, '-', '_' or '.', "
        "starting and ending with a letter or digit (ids starting with '.' are Elasticsearch's preconfigured "
        "endpoints')"])
    obj = manifest("openai", "completion")
    obj["spec"]["serviceSettings"]["api_key"] = {"secretKeyRef": {"name": "Open_AI", "key": ".."}}
    code, lines = validate(capsys, write(tmp_path / "e.yaml", obj))
    assert code == 1 and not any("pattern" in line or "^" in line for line in lines)
    assert [line.split(": ", 2)[1] for line in lines] == ["spec.serviceSettings.api_key.secretKeyRef.key",
                                                         "spec.serviceSettings.api_key.secretKeyRef.name"]
