"""``kubeinfer validate FILE|DIR...``: InferenceEndpoint manifests checked offline, before
Argo CD or Flux sync them.

Each InferenceEndpoint document goes through what the API server would check (the CRD's
schema and CEL rules) and then through the catalog, as the operator would. Documents of
other kinds are skipped, so a whole kustomize folder can be given. One line per problem,
``FILE: PATH: MESSAGE``; the exit status is 1 when there is any problem.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Iterable, TextIO

from model_server.catalog import from_manifest
from model_server.errors import ElasticsearchError
from model_server.manifests import ManifestError, manifest_files, read_documents

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


def validate_paths(paths: Iterable[str]) -> Report:
    report = Report(findings=[])
    try:
        files = manifest_files(paths)
    except ManifestError as exc:
        report.findings.append(Finding(exc.source, "<file>", exc.message))
        return report
    for path in files:
        report.files += 1
        try:
            documents = read_documents(path)
        except ManifestError as exc:
            report.findings.append(Finding(exc.source, "<file>", exc.message))
            continue
        for doc in documents:
            if not doc.is_inference_endpoint:
                continue
            report.endpoints += 1
            problems = admission_problems(doc.body) or catalog_problems(doc.body)
            report.findings.extend(Finding(doc.source, where, message) for where, message in problems)
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
