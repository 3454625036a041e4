"""Prometheus metrics of the calls the proxy makes to providers, on the default registry
that ``/metrics`` exposes: calls by outcome, their duration, retries, and requests that
the endpoint's own rate limit refused."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

CALLS = Counter(
    "kubeinfer_provider_calls_total",
    "HTTP calls to the provider, by endpoint, service and answer status (\"error\" when there was no answer).",
    ["inference_id", "service", "status"],
)
DURATION = Histogram(
    "kubeinfer_provider_call_duration_seconds",
    "Time from sending a call to the provider to its answer's headers.",
    ["inference_id", "service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
RETRIES = Counter(
    "kubeinfer_provider_retries_total",
    "Calls sent again after a 429, a 5xx or a dropped connection.",
    ["inference_id", "service"],
)
RATE_LIMITED = Counter(
    "kubeinfer_provider_rate_limited_total",
    "Requests refused with a 429 by the endpoint's own rate limit.",
    ["inference_id", "service"],
)


class ProviderMetrics:
    """The metric children of one endpoint, looked up once."""

    def __init__(self, inference_id: str, service: str) -> None:
        self._inference_id, self._service = inference_id, service
        self.duration = DURATION.labels(inference_id, service)
        self.retries = RETRIES.labels(inference_id, service)
        self.rate_limited = RATE_LIMITED.labels(inference_id, service)
        self._calls: dict[str, object] = {}

    def call(self, status: int | None) -> None:
        key = str(status) if status is not None else "error"
        child = self._calls.get(key)
        if child is None:
            child = self._calls[key] = CALLS.labels(self._inference_id, self._service, key)
        child.inc()  # type: ignore[attr-defined]
