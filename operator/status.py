"""An InferenceEndpoint's status, as pure functions of what the operator observed.

Status follows the conventions kstatus, Argo CD and Flux read: a ``Ready`` condition
(and ``Progressing`` while a rollout is under way; kstatus's ``Reconciling`` and
``Stalled`` while they are true), each with a CamelCase ``reason``, a
human ``message``, ``lastTransitionTime`` (kept while the condition's status does not
change) and ``observedGeneration``; top-level ``observedGeneration``, ``url`` and
``readyReplicas`` and ``replicas``. The words are ``kubeinfer.resource``'s, which the
gateway reads status with. This module reads no API and knows nothing of kopf.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass
from typing import Any, Mapping

from kubeinfer.resource import (
    APPLY_FAILED, AVAILABLE, MODEL_LOAD_FAILED, MODEL_LOADING, DEPLOYMENT_NOT_FOUND, INVALID_SPEC, POLICY_VIOLATION, PROGRESSING, READY, RECONCILING,
    REGION_NOT_ALLOWED,
    ROLLING_OUT, ROLLOUT_COMPLETE, ROLLOUT_FAILED, SCALED_TO_ZERO, SECRET_NOT_ALLOWED, SECRET_NOT_FOUND, STALLED,
    UNAVAILABLE, ConditionStatus, LABEL_ALLOW_CUSTOM_URL,
)


@dataclass(frozen=True)
class Observation:
    """What the operator knows about an endpoint at one moment."""

    ready: bool
    reason: str
    message: str
    # None: no rollout is known (invalid spec, missing Secret); the Progressing condition is dropped.
    progressing: bool | None = None
    progressing_reason: str = ""
    progressing_message: str = ""
    ready_replicas: int | None = None
    # The replicas the Deployment asks for (the autoscaler's choice where there is one).
    replicas: int | None = None
    url: str | None = None
    # The Deployment serving the endpoint: its own, its pool's, or its deployment_id's host's.
    model_server: str | None = None
    # Of an embedding endpoint, when its settings say (the model server reports the rest).
    dimensions: int | None = None
    similarity: str | None = None


def invalid_spec(message: str) -> Observation:
    return Observation(ready=False, reason=INVALID_SPEC, message=message)


def policy_violation(message: str) -> Observation:
    return Observation(ready=False, reason=POLICY_VIOLATION, message=message)


def region_not_allowed(message: str) -> Observation:
    return Observation(ready=False, reason=REGION_NOT_ALLOWED, message=message)


def secret_not_found(missing: Mapping[str, list[str]] | list[str]) -> Observation:
    names = ", ".join(sorted(missing))
    return Observation(ready=False, reason=SECRET_NOT_FOUND,
                       message=f"waiting for Secret(s) [{names}] referenced by serviceSettings")


def secret_not_allowed(names: list[str], setting: str) -> Observation:
    listed = ", ".join(sorted(names))
    return Observation(
        ready=False, reason=SECRET_NOT_ALLOWED,
        message=f"Secret(s) [{listed}] would be sent to the custom [{setting}]: label them "
                f"{LABEL_ALLOW_CUSTOM_URL}=true to allow it (their owner's consent), or use the provider's own URL",
    )


def apply_failed(message: str) -> Observation:
    return Observation(ready=False, reason=APPLY_FAILED, message=message)


def observe_deployment(deployment: Mapping[str, Any] | None, *, url: str | None = None) -> Observation:
    """Readiness of an endpoint from its Deployment, as the Deployment controller reports it."""
    if deployment is None:
        return Observation(ready=False, reason=DEPLOYMENT_NOT_FOUND, message="the Deployment does not exist yet",
                           progressing=True, progressing_reason=ROLLING_OUT,
                           progressing_message="creating the Deployment", url=url)
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    desired = spec.get("replicas", 1)
    ready = status.get("readyReplicas") or 0
    available = status.get("availableReplicas") or 0
    updated = status.get("updatedReplicas") or 0
    total = status.get("replicas") or 0
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    progress = conditions.get("Progressing") or {}
    observed = status.get("observedGeneration")
    generation = meta.get("generation")

    if progress.get("reason") == "ProgressDeadlineExceeded":
        msg = f"the rollout did not finish in time: {progress.get('message') or 'progress deadline exceeded'}"
        return Observation(ready=available > 0 and available >= desired, reason=ROLLOUT_FAILED if not available
                           else AVAILABLE, message=msg, progressing=False, progressing_reason=ROLLOUT_FAILED,
                           progressing_message=msg, ready_replicas=ready, replicas=desired, url=url)
    rolling = (
        observed is None or (generation is not None and observed < generation)
        or updated < desired or total > updated or available < desired
    )
    if desired == 0:
        # Usable: a request wakes it (the gateway holds it meanwhile), so GitOps tools
        # must not show it degraded.
        return Observation(ready=True, reason=SCALED_TO_ZERO,
                           message="scaled to zero replicas; the next request starts one",
                           progressing=False, progressing_reason=ROLLOUT_COMPLETE,
                           progressing_message="no replicas requested", ready_replicas=0, replicas=0, url=url)
    if rolling:
        message = f"rolling out: {updated} of {desired} replicas updated, {available} available"
        # Ready while the old pods still serve: the Deployment's minimum availability, not the
        # rollout, decides (all replicas available when the controller says nothing).
        availability = conditions.get("Available")
        if availability is not None:
            is_ready = availability.get("status") == "True" and available > 0
        else:
            is_ready = available >= desired
        return Observation(ready=is_ready, reason=AVAILABLE if is_ready else UNAVAILABLE,
                           message=message if not is_ready else f"{available} of {desired} replicas available",
                           progressing=True, progressing_reason=ROLLING_OUT, progressing_message=message,
                           ready_replicas=ready, replicas=desired, url=url)
    return Observation(ready=True, reason=AVAILABLE, message=f"{available} of {desired} replicas available",
                       progressing=False, progressing_reason=ROLLOUT_COMPLETE,
                       progressing_message="the Deployment is rolled out", ready_replicas=ready, replicas=desired,
                       url=url)


@dataclass(frozen=True)
class ModelReport:
    """What a shared model server's pod said of one member's model (``/readyz?model=``)."""

    loaded: bool
    failed: bool = False
    message: str = ""


def observe_model(observation: Observation, report: ModelReport | None) -> Observation:
    """A shared model server's member is Ready once its own model is loaded, not when the
    Deployment is: the pods serve the others meanwhile, and one model that failed fails
    alone. A Deployment that is not ready (or scaled to zero: a request wakes it) says more."""
    if not observation.ready or observation.reason == SCALED_TO_ZERO or (report is not None and report.loaded):
        return observation
    if report is not None and report.failed:
        return dataclasses.replace(observation, ready=False, reason=MODEL_LOAD_FAILED,
                                   message=f"its model failed to load: {report.message}")
    message = report.message if report is not None and report.message else "its model is loading"
    return dataclasses.replace(observation, ready=False, reason=MODEL_LOADING, message=message)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(previous: list[Mapping[str, Any]] | None, type_: str, status: bool, reason: str, message: str,
              generation: int | None, now: str) -> dict[str, Any]:
    """One condition; ``lastTransitionTime`` is kept when its status did not change."""
    value = (ConditionStatus.TRUE if status else ConditionStatus.FALSE).value
    before = next((c for c in previous or [] if c.get("type") == type_), None)
    since = before.get("lastTransitionTime") if before and before.get("status") == value else None
    return {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or now,
        "observedGeneration": generation,
    }


def _stalled(observation: Observation) -> tuple[str, str] | None:
    """Why the operator cannot make progress on its own, if it cannot."""
    if observation.reason in (INVALID_SPEC, POLICY_VIOLATION, REGION_NOT_ALLOWED, SECRET_NOT_FOUND, APPLY_FAILED,
                              MODEL_LOAD_FAILED):
        return observation.reason, observation.message
    if observation.progressing_reason == ROLLOUT_FAILED:
        return ROLLOUT_FAILED, observation.progressing_message
    return None


def endpoint_status(previous: Mapping[str, Any] | None, observation: Observation, generation: int | None,
                    *, now: str | None = None) -> dict[str, Any]:
    """The whole new ``status``: fields to clear are ``None`` (a merge patch removes them)."""
    now = now or _now()
    before = list((previous or {}).get("conditions") or [])
    conditions = [condition(before, READY, observation.ready, observation.reason, observation.message,
                            generation, now)]
    if observation.progressing is not None:
        conditions.append(condition(before, PROGRESSING, observation.progressing, observation.progressing_reason,
                                    observation.progressing_message, generation, now))
    if observation.progressing:
        conditions.append(condition(before, RECONCILING, True, observation.progressing_reason,
                                    observation.progressing_message, generation, now))
    stalled = _stalled(observation)
    if stalled is not None:
        conditions.append(condition(before, STALLED, True, stalled[0], stalled[1], generation, now))
    return {
        "conditions": conditions,
        "observedGeneration": generation,
        "url": observation.url,
        "modelServer": observation.model_server,
        "readyReplicas": observation.ready_replicas,
        "replicas": observation.replicas,
        "dimensions": observation.dimensions,
        "similarity": observation.similarity,
    }


def transitions(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The conditions whose status or reason changed: each deserves a Kubernetes Event."""
    before = {c.get("type"): c for c in (previous or {}).get("conditions") or []}
    changed = []
    for cond in new.get("conditions") or []:
        if cond["type"] not in (READY, PROGRESSING):  # kstatus's mirrors tell nothing new
            continue
        old = before.get(cond["type"])
        if old is None or old.get("status") != cond["status"] or old.get("reason") != cond["reason"]:
            changed.append(cond)
    return changed


def same_status(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether writing ``new`` would change nothing (saves an API call and a watch event)."""
    previous = previous or {}
    return all(previous.get(key) == value for key, value in new.items())
