"""Asking a shared model server whether one member's model is loaded.

A pool's pods (``kubeinfer serve --pool``) answer ``GET /readyz?model=<inference id>``:
200 once the model is loaded, 503 with ``state`` ``loading`` or ``failed`` and the pod's
``reason`` otherwise, 404 for a member the pod has not read from its ConfigMap yet. The
question goes to the model server's Service (one of its ready pods answers), with a short
timeout: a server that does not answer is reported as loading, never as failed.

This module speaks that one HTTP exchange; it knows nothing of kopf, the API server or
what the status says about the answer (``status`` does).
"""

from __future__ import annotations

import httpx

from .builders import SERVICE_PORT
from .status import ModelReport

# A pod answers its readiness at once; one that takes longer is as good as silent.
TIMEOUT = 2.0
# The most of the pod's reason a condition's message carries.
REASON_LIMIT = 1024


def model_server_url(service: str, namespace: str, cluster_domain: str, base: str = "") -> str:
    """Where the model server ``service`` answers: ``base`` where the operator's settings
    name one, else its Service's cluster address."""
    if base:
        return base.rstrip("/")
    port = "" if SERVICE_PORT == 80 else f":{SERVICE_PORT}"
    return f"http://{service}.{namespace}.svc.{cluster_domain}{port}"


async def model_report(client: httpx.AsyncClient, url: str, inference_id: str) -> ModelReport:
    """What the model server at ``url`` says of ``inference_id``'s model."""
    try:
        answer = await client.get(f"{url}/readyz", params={"model": inference_id}, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        return ModelReport(loaded=False, message=f"the model server did not answer: {type(exc).__name__}")
    if answer.status_code == 200:
        return ModelReport(loaded=True)
    if answer.status_code == 404:
        return ModelReport(loaded=False, message="the model server has not read the endpoint yet")
    try:
        body = answer.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    reason = str(body.get("reason") or f"the model server answered {answer.status_code}")[:REASON_LIMIT]
    return ModelReport(loaded=False, failed=body.get("state") == "failed", message=reason)
