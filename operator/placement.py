"""Where a model server's pods may run under the inference region policy.

With ``KUBEINFER_REGION_NODE_PLACEMENT`` (the chart's ``regionPolicy.nodePlacement``),
the pods of a model server (a built-in or Hugging Face model running on the cluster)
must run on nodes whose ``topology.kubernetes.io/region`` label names a region the policy
allows: the policy's ``allowed_regions``, or every known region of its ``allowed_geos``.
The requirement is added to each of the pod's required node selector terms (an endpoint's
own ``spec.deployment.affinity`` included), so no term schedules a pod outside it.

Pure: a pod spec in, the same pod spec with the requirement; no API, no kopf.
"""

from __future__ import annotations

import copy
from typing import Any

from kubeinfer.region_policy import REGION_LABEL, RegionPolicy

REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"


def region_requirement(policy: RegionPolicy) -> dict[str, Any]:
    """The node selector requirement that keeps pods inside ``policy``."""
    return {"key": REGION_LABEL, "operator": "In", "values": policy.node_regions()}


def place_in_regions(pod: dict[str, Any], policy: RegionPolicy) -> None:
    """Require ``pod`` (a pod spec) to run on nodes in the regions ``policy`` allows."""
    requirement = region_requirement(policy)
    affinity = pod.setdefault("affinity", {})
    node = affinity.setdefault("nodeAffinity", {})
    required = node.setdefault(REQUIRED, {})
    terms = required.get("nodeSelectorTerms") or [{}]
    placed = []
    for term in terms:
        term = copy.deepcopy(term)
        expressions = [e for e in term.get("matchExpressions") or [] if e.get("key") != REGION_LABEL]
        # A term's own region choice narrows the policy's, never widens it.
        own = [e for e in term.get("matchExpressions") or [] if e.get("key") == REGION_LABEL]
        term["matchExpressions"] = expressions + [copy.deepcopy(requirement)] + own
        placed.append(term)
    required["nodeSelectorTerms"] = placed
