"""``kubeinfer render FILE``: print, as YAML, the objects the operator would create for the
InferenceEndpoints in a manifest, with the operator settings of the environment.

For review and diffs in GitOps pipelines. ownerReferences carry the CR's uid when the
manifest has one or ``--uid`` is given, a placeholder otherwise. Secrets are not read:
the pod template's hash then covers the configuration only. ``spec.deployment`` is held
to the deployment policy as the operator holds it: the settings' (safe defaults unless
``KUBEINFER_DEPLOYMENT_POLICY`` says otherwise), or the file given with ``--policy``.
With ``--region-policy``, an endpoint outside the inference region policy is refused as
the operator refuses it, and model servers are placed in its regions where the file's
``regionPolicy.nodePlacement`` (or ``KUBEINFER_REGION_NODE_PLACEMENT``) asks for it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml

from kubeinfer.deployment_policy import PolicyError, PolicyViolation, load_policy
from kubeinfer.errors import ElasticsearchError
from kubeinfer.region_policy import (
    RegionPolicy, RegionPolicyError, load_node_placement, load_region_policy, region_refusal,
)
from kubeinfer.resource import KIND

from .builders import UID_PLACEHOLDER, desired_state
from kubeinfer.config import OperatorSettings


def _documents(path: str) -> Iterator[dict[str, Any]]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    for doc in yaml.safe_load_all(text):
        if isinstance(doc, dict) and doc.get("kind") == "List":
            yield from (item for item in doc.get("items") or [] if isinstance(item, dict))
        elif isinstance(doc, dict):
            yield doc


def render(path: str, settings: OperatorSettings, uid: str | None = None,
           region_policy: RegionPolicy | None = None) -> list[dict[str, Any]]:
    """Every object for every InferenceEndpoint in the file at ``path``."""
    objects: list[dict[str, Any]] = []
    for doc in _documents(path):
        if doc.get("kind") != KIND:
            continue
        state = desired_state(doc, settings, uid=uid, region_policy=region_policy)
        refused = region_refusal(state.config, region_policy)
        if refused is not None:
            raise ElasticsearchError(403, "status_exception", refused)
        objects += state.objects()
    return objects


def run(args: argparse.Namespace) -> int:
    settings = OperatorSettings.from_env()
    if getattr(args, "policy", None):
        try:
            settings = settings.model_copy(update={"deployment_policy": load_policy(args.policy)})
        except PolicyError as exc:
            print(f"kubeinfer render: {exc}", file=sys.stderr)
            return 2
    region_policy = None
    if getattr(args, "region_policy", None):
        try:
            region_policy = load_region_policy(args.region_policy)
            placement = load_node_placement(args.region_policy)
        except RegionPolicyError as exc:
            print(f"kubeinfer render: {exc}", file=sys.stderr)
            return 2
        if placement is not None:
            settings = settings.model_copy(update={"region_node_placement": placement})
    try:
        objects = render(args.path, settings, uid=args.uid, region_policy=region_policy)
    except (OSError, yaml.YAMLError) as exc:
        print(f"kubeinfer render: cannot read {args.path}: {exc}", file=sys.stderr)
        return 2
    except ElasticsearchError as exc:
        print(f"kubeinfer render: {args.path}: {exc.reason}", file=sys.stderr)
        return 1
    except PolicyViolation as exc:
        for violation in exc.violations:
            print(f"kubeinfer render: {args.path}: {violation}", file=sys.stderr)
        return 1
    if not objects:
        print(f"kubeinfer render: no {KIND} in {args.path}", file=sys.stderr)
        return 1
    if not args.uid and any(r.get("uid") == UID_PLACEHOLDER for o in objects
                            for r in o["metadata"].get("ownerReferences", [])):
        print(f"# ownerReferences use the placeholder uid {UID_PLACEHOLDER}: pass --uid with the "
              f"InferenceEndpoint's uid before applying these objects yourself")
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))
    return 0
