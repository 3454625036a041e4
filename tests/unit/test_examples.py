"""examples/: one InferenceEndpoint per service and task type, each valid for the CRD's
schema, for ``kubeinfer validate`` and for the catalog."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from jsonschema import Draft4Validator

from catalog_cases import PAIRS, SECRET_MAPS, SECRET_SETTINGS
from kubeinfer.crd import build_crd
from kubeinfer.catalog import SERVICES, from_manifest
from kubeinfer.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCHEMA = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def service_examples() -> list[Path]:
    return sorted(p for service in SERVICES for p in (EXAMPLES / service).glob("*.yaml"))


def test_every_service_and_task_type_has_an_example():
    found = sorted((p.parent.name, p.stem) for p in service_examples())
    assert found == PAIRS


@pytest.mark.parametrize("path", service_examples(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_example_matches_its_folder_and_validates_against_the_crd_schema(path):
    body = yaml.safe_load(path.read_text())
    assert (body["spec"]["service"], body["spec"]["taskType"]) == (path.parent.name, path.stem)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in Draft4Validator(SCHEMA).iter_errors(body)]
    assert errors == []
    config = from_manifest(body)
    settings = body["spec"]["serviceSettings"]
    for name in SECRET_SETTINGS:
        if name in settings:
            assert set(settings[name]) == {"secretKeyRef"}
    for name in SECRET_MAPS:
        for value in (settings.get(name) or {}).values():
            assert set(value) == {"secretKeyRef"}
    assert set(config.secret_refs()) == {n for n in SECRET_SETTINGS if n in settings} | {
        f"{n}.{key}" for n in SECRET_MAPS if n in settings for key in settings[n]}


def test_all_examples_pass_kubeinfer_validate(capsys):
    code = main(["validate", *(str(EXAMPLES / s) for s in sorted(SERVICES) if (EXAMPLES / s).is_dir())])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.strip() == f"OK: {len(PAIRS)} InferenceEndpoint manifest(s) in {len(PAIRS)} file(s)"
