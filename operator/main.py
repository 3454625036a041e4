"""``kubeinfer operator``: run the kopf operator that reconciles InferenceEndpoints.

Namespaces come from ``--namespace`` (repeatable) or ``KUBEINFER_WATCH_NAMESPACES``;
with neither, the whole cluster is watched. ``--liveness`` serves kopf's health probe;
``--peering`` names a peering object so that several replicas take turns.
"""

from __future__ import annotations

import argparse
import random
import sys

from kubeinfer.config import OperatorSettings
from kubeinfer.kube import Connection

UNUSED_CLIENTS = ("kubernetes", "kubernetes_asyncio", "pykube")


def run(args: argparse.Namespace) -> int:
    settings = OperatorSettings.from_env()
    try:
        Connection.discover()
    except Exception as exc:  # no service account and no usable kubeconfig: say so in one line
        print(f"kubeinfer operator: cannot reach a Kubernetes API server: {exc}", file=sys.stderr)
        return 2
    # kopf imports the official Kubernetes clients where they are installed, for logins and
    # types of its own; the operator logs in through its own handler and never uses them,
    # and the synchronous one alone weighs some 80 MiB of memory.
    for unused in UNUSED_CLIENTS:
        sys.modules.setdefault(unused, None)  # type: ignore[assignment]
    import kopf

    from . import handlers  # noqa: F401 - registers the handlers

    namespaces = list(getattr(args, "namespace", None) or settings.watch_namespaces)
    peering = getattr(args, "peering", None)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=peering is None,
        peering_name=peering,
        # kopf pauses an operator that sees a live peer of the same priority: replicas draw
        # distinct priorities, so one works while the others stand by.
        priority=random.randint(1, 10**6) if peering else 0,
        liveness_endpoint=getattr(args, "liveness", None) or None,
        # The Secret watch (``handlers``) covers the same namespaces as kopf's.
        memo=kopf.Memo(namespaces=namespaces),
    )
    return 0
