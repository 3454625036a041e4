"""Prometheus metrics of the operator: reconciles (count by result), errors and duration.

Served on ``KUBEINFER_METRICS_PORT`` by ``serve_metrics``; a registry of its own keeps
them apart from anything else in the process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "kubeinfer_operator_reconciles_total", "Reconciliations of InferenceEndpoints, by trigger and result.",
    ["trigger", "result"], registry=REGISTRY,
)
ERRORS = Counter(
    "kubeinfer_operator_reconcile_errors_total", "Reconciliations that failed with an API error.",
    registry=REGISTRY,
)
DURATION = Histogram(
    "kubeinfer_operator_reconcile_duration_seconds", "Time to reconcile one InferenceEndpoint.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY,
)
READY_ENDPOINTS = Gauge(
    "kubeinfer_operator_endpoints_ready", "InferenceEndpoints whose Ready condition is True.", registry=REGISTRY,
)

_started: set[int] = set()


def serve_metrics(port: int, addr: str = "0.0.0.0") -> bool:
    """Start the /metrics HTTP server once per port; False when metrics are off (port 0)."""
    if port <= 0 or port in _started:
        return False
    start_http_server(port, addr=addr, registry=REGISTRY)
    _started.add(port)
    return True
