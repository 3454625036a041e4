"""Reading InferenceEndpoint manifests from files and folders.

Files are YAML (several documents each, as ``kubectl`` and kustomize write them) or JSON;
a folder is searched recursively for ``*.yaml``, ``*.yml`` and ``*.json``. Used by
``kubeinfer validate`` and by local mode. This module only reads; the catalog validates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .resource import API_VERSION, KIND

SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(Exception):
    """A file that cannot be read or parsed."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.message = message


@dataclass(frozen=True)
class Document:
    """One document of a manifest file. ``source`` names the file, with ``#N`` (from 1)
    when the file holds more than one document."""

    source: str
    body: Any

    @property
    def is_inference_endpoint(self) -> bool:
        return is_inference_endpoint(self.body)


def is_inference_endpoint(body: Any) -> bool:
    return isinstance(body, Mapping) and body.get("apiVersion") == API_VERSION and body.get("kind") == KIND


def manifest_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, and the manifest files under the folders named, in a stable order."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise ManifestError(str(path), "no such file or directory")
    return files


def read_documents(path: str | Path) -> list[Document]:
    """Every non-empty document of one file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(str(path), f"cannot be read: {exc.__class__.__name__}") from None
    return parse_documents(text, str(path))


def parse_documents(text: str, source: str) -> list[Document]:
    """Every non-empty document of a YAML (or JSON) text read from ``source``."""
    try:
        bodies = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ManifestError(source, f"invalid YAML{where}: {problem}") from None
    present = [(i, body) for i, body in enumerate(bodies, start=1) if body is not None]
    if len(present) == 1:
        return [Document(source, present[0][1])]
    # Numbered by position in the file, empty documents included, so that #N can be found.
    return [Document(f"{source}#{i}", body) for i, body in present]


def load_manifests(paths: Iterable[str | Path]) -> list[tuple[str, dict[str, Any]]]:
    """The InferenceEndpoint manifests in ``paths`` as (source, manifest) pairs; documents
    of other kinds are skipped. Raises ``ManifestError`` for a missing or unparsable file."""
    found = []
    for path in manifest_files(paths):
        for doc in read_documents(path):
            if doc.is_inference_endpoint:
                found.append((doc.source, dict(doc.body)))
    return found
