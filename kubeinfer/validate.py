"""``kubeinfer validate FILE|DIR...``: InferenceEndpoint manifests checked offline, before
Argo CD or Flux sync them.

Each InferenceEndpoint document goes through what the API server would check (the CRD's
schema and CEL rules) and then through the catalog, as the operator would. Documents of
other kinds are skipped, so a whole kustomize folder can be given, or ``-`` to read
``kustomize build`` output from standard input. One line per problem,
``FILE: PATH: MESSAGE``; the exit status is 1 when there is any problem.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Iterable, TextIO

from kubeinfer.catalog import from_manifest
from kubeinfer.errors import ElasticsearchError
from kubeinfer.manifests import Document, ManifestError, manifest_files, parse_documents, read_documents
from kubeinfer.resource import API_VERSION, GROUP, KIND

from .admission import admission_problems


@dataclass(frozen=True)
class Finding:
    source: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.path}: {self.message}"


@dataclass
class Report:
    findings: list[Finding]
    files: int = 0
    endpoints: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings


def catalog_problems(manifest: dict) -> list[tuple[str, str]]:
    try:
        from_manifest(manifest)
    except ElasticsearchError as exc:
        return [("spec", exc.reason)]
    return []


STDIN = "-"


def _other_version(body: object) -> bool:
    """An InferenceEndpoint of a version this kubeinfer does not serve."""
    return (isinstance(body, dict) and body.get("kind") == KIND
            and str(body.get("apiVersion", "")).startswith(f"{GROUP}/") and body.get("apiVersion") != API_VERSION)


def validate_documents(documents: Iterable[Document], report: Report) -> None:
    for doc in documents:
        if _other_version(doc.body):
            report.findings.append(Finding(doc.source, "apiVersion", f"must be {API_VERSION}"))
            continue
        if not doc.is_inference_endpoint:
            continue
        report.endpoints += 1
        problems = admission_problems(doc.body) or catalog_problems(doc.body)
        report.findings.extend(Finding(doc.source, where, message) for where, message in problems)


def validate_paths(paths: Iterable[str], stdin: TextIO | None = None) -> Report:
    report = Report(findings=[])
    paths = list(paths)
    try:
        files = manifest_files(p for p in paths if p != STDIN)
    except ManifestError as exc:
        report.findings.append(Finding(exc.source, "<file>", exc.message))
        return report
    sources: list[tuple[str, str | None]] = []  # (name, text already read, if any)
    if STDIN in paths:
        sources.append(("<stdin>", (stdin or sys.stdin).read()))
    sources.extend((str(path), None) for path in files)
    for source, text in sources:
        report.files += 1
        try:
            documents = parse_documents(text, source) if text is not None else read_documents(source)
        except ManifestError as exc:
            report.findings.append(Finding(exc.source, "<file>", exc.message))
            continue
        validate_documents(documents, report)
    return report


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    report = validate_paths(args.paths)
    for finding in report.findings:
        print(finding, file=out)
    if not report.ok:
        return 1
    print(f"OK: {report.endpoints} InferenceEndpoint manifest(s) in {report.files} file(s)", file=out)
    return 0
