"""``kubeinfer validate FILE|DIR...``: InferenceEndpoint manifests checked offline, before
Argo CD or Flux sync them.

Each InferenceEndpoint document goes through what the API server would check (the CRD's
schema and CEL rules) and then through the catalog, as the operator would. Documents of
other kinds are skipped, so a whole kustomize folder can be given, or ``-`` to read
``kustomize build`` output from standard input; but a document that looks meant to be one
(a misspelled kind, an unknown apiVersion) is a problem, and so is finding none at all.
Names are checked as the API server checks them (a DNS subdomain), not rewritten as
``render`` would. Every problem of a document is reported, its name's with its spec's;
the catalog's checks, which the operator makes once the API server has accepted a
document, run only on documents the schema and rules accept, so that one mistake is not
reported twice. Last, ``spec.deployment`` is held to the deployment policy, as the
chart's admission policy and the operator hold it: the file given with ``--policy``, or
the operator's settings (``KUBEINFER_DEPLOYMENT_POLICY``, safe defaults when unset). One
line per problem, ``FILE: PATH: MESSAGE``; the exit status is 1 when there is any
problem, 2 when the policy file cannot be used. With ``--region-policy``, an endpoint
whose cloud region the inference region policy leaves out is a problem too.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from dataclasses import dataclass, field, replace
from typing import Iterable, TextIO

from kubeinfer.catalog import SERVICES, from_manifest
from kubeinfer.config import OperatorSettings
from kubeinfer.deployment_policy import DeploymentPolicy, PolicyError, load_policy, violations
from kubeinfer.region_policy import RegionPolicy, RegionPolicyError, endpoint_reach, load_region_policy, \
    region_refusal
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


@dataclass(frozen=True)
class Policy:
    """The deployment policy manifests are held to, the images always allowed, and the
    inference region policy, if any."""

    policy: DeploymentPolicy = field(default_factory=DeploymentPolicy)
    images: tuple[str, ...] = ()
    region: RegionPolicy | None = None

    def problems(self, manifest: dict) -> list[tuple[str, str]]:
        found = violations(manifest.get("spec") or {}, self.policy, self.images)
        return [(v.path, v.message) for v in found] + self._region_problems(manifest)

    def _region_problems(self, manifest: dict) -> list[tuple[str, str]]:
        if self.region is None:
            return []
        config = from_manifest(manifest)  # the catalog's problems were reported before
        reason = region_refusal(config, self.region)
        if reason is None or endpoint_reach(config) is None:
            return []
        setting = SERVICES[config.service].region.setting
        return [(f"spec.serviceSettings.{setting}", reason)]


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


# What the API server accepts as an object's name (a DNS subdomain) and namespace (a label).
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _looks_like_our_kind(kind: object) -> bool:
    """A kind that was surely meant to be InferenceEndpoint (a typo, a plural, another case)."""
    if not isinstance(kind, str) or kind == KIND:
        return False
    return difflib.SequenceMatcher(None, kind.lower(), KIND.lower()).ratio() >= 0.85


def identity_problems(body: object) -> list[tuple[str, str]]:
    """apiVersion and kind of a document meant to be an InferenceEndpoint; empty for other kinds."""
    if not isinstance(body, dict):
        return []
    kind, version = body.get("kind"), body.get("apiVersion")
    in_group = isinstance(version, str) and version.startswith(f"{GROUP}/")
    if kind == KIND and version != API_VERSION:
        return [("apiVersion", f"must be {API_VERSION}")]
    if _looks_like_our_kind(kind) or (in_group and kind != KIND):
        return [("kind", f"[{kind}] is not a kind of {GROUP}: must be {KIND}")]
    return []


def name_problems(body: dict) -> list[tuple[str, str]]:
    """metadata.name and namespace as the API server checks them."""
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        return [("metadata", "is required, with a name")]
    problems = []
    name = metadata.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name)):
        problems.append(("metadata.name", f"[{name}] is not a valid Kubernetes name: lowercase letters, digits, "
                                          "'-' and '.', starting and ending with a letter or digit"))
    namespace = metadata.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not _DNS_LABEL.fullmatch(namespace)):
        problems.append(("metadata.namespace", f"[{namespace}] is not a valid Kubernetes namespace"))
    return problems


def validate_documents(documents: Iterable[Document], report: Report, policy: Policy | None = None) -> None:
    policy = policy or Policy()
    for doc in documents:
        identity = identity_problems(doc.body)
        if identity:
            report.findings.extend(Finding(doc.source, where, message) for where, message in identity)
            continue
        if not doc.is_inference_endpoint:
            continue
        report.endpoints += 1
        problems = name_problems(doc.body) + (admission_problems(doc.body) or catalog_problems(doc.body)
                                              or policy.problems(doc.body))
        report.findings.extend(Finding(doc.source, where, message) for where, message in problems)


def validate_paths(paths: Iterable[str], stdin: TextIO | None = None, policy: Policy | None = None) -> Report:
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
        validate_documents(documents, report, policy)
    return report


def operator_policy(path: str | None) -> Policy:
    """The policy in the file at ``path``, else the operator's settings' own; with the
    operator's images, from its settings."""
    settings = OperatorSettings.from_env()
    return Policy(load_policy(path) if path else settings.deployment_policy, settings.endpoint_images)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        policy = operator_policy(getattr(args, "policy", None))
        if getattr(args, "region_policy", None):
            policy = replace(policy, region=load_region_policy(args.region_policy))
    except (PolicyError, RegionPolicyError) as exc:
        print(f"kubeinfer validate: {exc}", file=sys.stderr)
        return 2
    report = validate_paths(args.paths, policy=policy)
    if report.ok and report.endpoints == 0:
        report.findings.append(Finding(", ".join(args.paths), "<file>",
                                       f"no {KIND} manifest ({API_VERSION}) found"))
    for finding in report.findings:
        print(finding, file=out)
    if not report.ok:
        return 1
    print(f"OK: {report.endpoints} InferenceEndpoint manifest(s) in {report.files} file(s)", file=out)
    return 0
