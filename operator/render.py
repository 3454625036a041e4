"""``kubeinfer render FILE``: print, as YAML, the objects the operator would create for the
InferenceEndpoints in a manifest, with the operator settings of the environment.

The endpoints of one file are rendered together: those of a pool, and those on another's
deployment (``deployment_id``), share one model server. ``--gateway NAMESPACE/NAME`` adds
an HTTPRoute per endpoint, ``--inference-pool`` an InferencePool per model server.

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

from .builders import UID_PLACEHOLDER, desired_state, parse_spec
from .pools import desired_group, endpoint_metadata, serving_groups
from .routes import gateway_objects, parse_parent
from kubeinfer.config import OperatorSettings


def _documents(path: str) -> Iterator[dict[str, Any]]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    for doc in yaml.safe_load_all(text):
        if isinstance(doc, dict) and doc.get("kind") == "List":
            yield from (item for item in doc.get("items") or [] if isinstance(item, dict))
        elif isinstance(doc, dict):
            yield doc


def render(path: str, settings: OperatorSettings, uid: str | None = None,
           notes: list[str] | None = None, region_policy: RegionPolicy | None = None) -> list[dict[str, Any]]:
    """Every object for every InferenceEndpoint in the file at ``path``; ``notes`` gets a
    line for each endpoint that would not be served (a full pool, a missing deployment)."""
    return render_objects([doc for doc in _documents(path) if doc.get("kind") == KIND], settings, uid, notes,
                          region_policy)


def render_objects(crs: list[dict[str, Any]], settings: OperatorSettings, uid: str | None = None,
                   notes: list[str] | None = None, region_policy: RegionPolicy | None = None) -> list[dict[str, Any]]:
    groups, alone, refused = serving_groups(crs)
    objects: list[dict[str, Any]] = []
    for cr in alone:
        state = desired_state(cr, settings, uid=uid, region_policy=region_policy)
        outside = region_refusal(state.config, region_policy)
        if outside is not None:
            raise ElasticsearchError(403, "status_exception", outside)
        server = state.deployment
        objects += state.objects()
        objects += gateway_objects(settings, [(state.config, state.configmap["metadata"])], server,
                                    model_server=not state.config.spec.external)
    for group in groups:
        state = desired_group(group, settings, uid=uid, region_policy=region_policy)
        objects += state.objects()
        members = [(parse_spec(cr), endpoint_metadata(cr, uid=uid)) for cr in state.plan.served]
        objects += gateway_objects(settings, members, state.deployment, model_server=True)
        refused.update(state.plan.refused)
    for name, why in sorted(refused.items()):
        if notes is not None:
            notes.append(f"InferenceEndpoint {name} is not served: {why.reason}: {why.message}")
    return objects


def run(args: argparse.Namespace) -> int:
    settings = OperatorSettings.from_env()
    if getattr(args, "gateway", None):
        try:
            parse_parent(args.gateway)
        except ValueError as exc:
            print(f"kubeinfer render: --gateway: {exc}", file=sys.stderr)
            return 2
        settings = settings.model_copy(update={"gateway_parent": args.gateway})
    if getattr(args, "inference_pool", False):
        settings = settings.model_copy(update={"inference_pool": True})
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
        notes: list[str] = []
        objects = render(args.path, settings, uid=args.uid, notes=notes, region_policy=region_policy)
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
    for note in notes:
        print(f"# {note}")
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))
    return 0
