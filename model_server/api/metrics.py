"""Prometheus metrics of the HTTP API: requests, errors and latency per endpoint.

Backends register their own (batch sizes, queue depth, tokens processed) on the same
default registry; ``/metrics`` exposes them all.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

# The label of requests to ids no endpoint has: ids come from the URL, and a label value
# per unknown id would grow ``/metrics`` without bound. Inference ids never start with "_".
UNKNOWN_ENDPOINT = "_unknown"

REQUESTS = Counter(
    "kubeinfer_inference_requests_total",
    "Inference requests answered, by endpoint, task type and HTTP status.",
    ["inference_id", "task_type", "status"],
)
ERRORS = Counter(
    "kubeinfer_inference_errors_total",
    "Inference requests answered with an error, by endpoint and Elasticsearch error type.",
    ["inference_id", "type"],
)
LATENCY = Histogram(
    "kubeinfer_inference_request_duration_seconds",
    "Time from receiving an inference request to its answer.",
    ["inference_id", "task_type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
INPUTS = Counter(
    "kubeinfer_inference_inputs_total",
    "Input texts received (one request may carry many).",
    ["inference_id", "task_type"],
)


def exposition() -> tuple[bytes, str]:
    """The Prometheus text exposition of every registered metric, with its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
