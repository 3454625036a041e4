"""Prometheus metrics of the HTTP API: requests, errors and latency per endpoint.

Backends register their own (batch sizes, queue depth, tokens processed) on the same
default registry; ``/metrics`` exposes them all.
"""

from __future__ import annotations

import functools

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


# A labelled child per label values, found once: ``labels()`` validates and locks on every
# call, a few microseconds a request that the hot path need not pay. Bounded, and an
# evicted child is found again by ``labels()`` (it is kept by the metric), so nothing is lost.
@functools.lru_cache(maxsize=4096)
def _requests(inference_id: str, task_type: str, status: int) -> Counter:
    return REQUESTS.labels(inference_id, task_type, str(status))


@functools.lru_cache(maxsize=4096)
def _latency(inference_id: str, task_type: str) -> Histogram:
    return LATENCY.labels(inference_id, task_type)


@functools.lru_cache(maxsize=4096)
def _errors(inference_id: str, error_type: str) -> Counter:
    return ERRORS.labels(inference_id, error_type)


@functools.lru_cache(maxsize=4096)
def _inputs(inference_id: str, task_type: str) -> Counter:
    return INPUTS.labels(inference_id, task_type)


def observe_request(inference_id: str, task_type: str, status: int, seconds: float,
                    error_type: str | None = None) -> None:
    """One answered inference request: counted by status, timed, and counted by error type."""
    _requests(inference_id, task_type, status).inc()
    _latency(inference_id, task_type).observe(seconds)
    if error_type is not None:
        _errors(inference_id, error_type).inc()


def count_inputs(inference_id: str, task_type: str, count: int) -> None:
    _inputs(inference_id, task_type).inc(count)


# The label every per-endpoint metric of the process carries, whichever module made it.
ENDPOINT_LABEL = "inference_id"


def forget_endpoint(inference_id: str) -> None:
    """Drop every series of a deleted endpoint, from every metric of the registry labelled
    by endpoint (the API's, the providers', batching's): endpoints come and go, and
    ``/metrics`` must not keep one series per id that ever was. An id created again is
    counted from zero, which Prometheus reads as a counter reset."""
    for collector in list(REGISTRY._collector_to_names):  # no public list of collectors
        names = getattr(collector, "_labelnames", ())
        if ENDPOINT_LABEL not in names:
            continue
        at = names.index(ENDPOINT_LABEL)
        with collector._lock:
            keys = [key for key in collector._metrics if key[at] == inference_id]
        for key in keys:
            collector.remove(*key)
    # The children cached for the hot path would be counted no more.
    for cached in (_requests, _latency, _errors, _inputs):
        cached.cache_clear()


def exposition() -> tuple[bytes, str]:
    """The Prometheus text exposition of every registered metric, with its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
