"""Loading InferenceEndpoint manifests from files and folders (validate and local mode)."""

from __future__ import annotations

import pytest
import yaml

from catalog_cases import manifest
from kubeinfer.manifests import ManifestError, load_manifests


def test_load_manifests_finds_endpoints_in_files_and_folders(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "two.yaml").write_text(yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}},
        manifest("openai", "completion", name="first"),
        None,
        manifest("cohere", "rerank", name="second"),
    ]))
    (tmp_path / "one.yml").write_text(yaml.safe_dump(manifest("elser", "sparse_embedding", name="third")))
    (tmp_path / "notes.txt").write_text("not a manifest")
    found = load_manifests([tmp_path])
    assert [(source, body["metadata"]["name"]) for source, body in found] == [
        (str(tmp_path / "one.yml"), "third"),
        (f"{tmp_path / 'sub' / 'two.yaml'}#2", "first"),
        (f"{tmp_path / 'sub' / 'two.yaml'}#4", "second"),
    ]


def test_load_manifests_raises_for_missing_or_broken_files(tmp_path):
    with pytest.raises(ManifestError) as caught:
        load_manifests([tmp_path / "missing.yaml"])
    assert caught.value.message == "no such file or directory"
    (tmp_path / "bad.yaml").write_text("a: [\n")
    with pytest.raises(ManifestError) as caught:
        load_manifests([tmp_path / "bad.yaml"])
    assert caught.value.source == str(tmp_path / "bad.yaml")
