"""``ProviderBackend``: what every external service's backend shares.

It owns the path of one request to a provider: the endpoint's rate limit, the deadline
taken from the request's timeout, authorization (a hook the service overrides for
tokens or signatures), retries of 429/5xx, the translation of failures into
Elasticsearch errors, and the reading of the answer. Service modules only build the
provider's request and translate its answer.

At start it makes the small call Elasticsearch makes when an endpoint is created: it
checks the credentials and, for ``text_embedding``, learns the number of dimensions.
Until that call succeeds ``ready`` is false and ``not_ready_reason`` says why; failed
checks are retried in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from urllib.parse import urlsplit
from typing import Any, AsyncIterator, Callable

import httpx
import orjson
from tenacity import RetryCallState

from kubeinfer import strict_json
from kubeinfer.catalog import InferenceEndpointConfig, TaskType
from kubeinfer.config import ServerSettings
from kubeinfer.errors import ElasticsearchError
from ..base import Backend, InferenceRequest
from ..content import check_contents
from ..results import Embeddings, TextEmbeddings
from ..chat import ChatRequest, Message
from ..url_policy import ForbiddenAddress
from . import faults, retries
from .metrics import ProviderMetrics
from .outbound import Answer, AnswerTooLarge, OutboundHTTP
from .ratelimit import RateLimiter

log = logging.getLogger(__name__)

# The input Elasticsearch sends when it checks a new endpoint.
CHECK_INPUT = "how big"
CHECK_TIMEOUT = 30.0
# Background re-checks after a failed start-up check: 2, 4, 8 ... up to 60 seconds apart.
RECHECK_MAX_DELAY = 60.0

ParseErrors = (KeyError, IndexError, TypeError, ValueError, AttributeError)


class ProviderBackend(Backend):
    """Base of the provider backends; subclasses implement ``infer`` (and ``stream``)."""

    default_similarity = "cosine"

    def __init__(
        self,
        config: InferenceEndpointConfig,
        *,
        outbound: OutboundHTTP | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        validate_at_start: bool = True,
        settings: ServerSettings | None = None,
        **_options: Any,  # options meant for other backends (device, batching) are ignored
    ) -> None:
        super().__init__(config)
        # The process's outbound HTTP, opened and closed by the app that serves this backend;
        # without one (tests, benchmarks) the backend makes its own, over ``transport`` if given.
        self._owns_outbound = outbound is None
        if outbound is None:
            settings = settings if settings is not None else ServerSettings.from_env()
            outbound = OutboundHTTP(settings, transport=transport)
        self.outbound = outbound
        self.allow_link_local = outbound.allow_link_local
        # Credentials added to each built request, where the service adds any.
        self._authorize = None if type(self).authorize is ProviderBackend.authorize else self.authorize
        self.validate_at_start = validate_at_start
        self.rate_limiter = RateLimiter(config.rate_limit, inference_id=config.inference_id)
        self.metrics = ProviderMetrics(config.inference_id, config.service)
        self.redact = faults.Redactor(self._secret_values())
        self.service = config.service
        self._ready = False
        self.not_ready_reason: str | None = "the start-up check of the provider has not run"
        self._learned_dimensions: int | None = None
        self._recheck: asyncio.Task | None = None
        # Back-off shared by every request of the endpoint: after a 429, nobody calls the
        # provider again before ``_quiet_until`` (loop time); a request whose deadline comes
        # first gets the provider's 429 at once instead of adding to the storm.
        self._quiet_until = 0.0
        self._throttled: ElasticsearchError | None = None
        self._throttle_streak = 0

    # ---- life cycle -----------------------------------------------------------------
    @property
    def client(self) -> httpx.AsyncClient:
        """The httpx client of the outbound HTTP, for a call that builds its own request."""
        return self.outbound.client

    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        if self._owns_outbound:
            await self.outbound.open()
        if not self.validate_at_start:
            self._mark_ready()
            return
        if not await self.check():
            self._recheck = asyncio.create_task(self._keep_checking())

    async def close(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recheck
        if self._owns_outbound:
            await self.outbound.close()

    async def check(self) -> bool:
        """One small request to the provider; True when it answered well."""
        try:
            if self.config.task_type == TaskType.CHAT_COMPLETION:
                answer = await self._check_chat()
            else:
                answer = await self.infer(self.check_request())
        except ElasticsearchError as exc:
            self.not_ready_reason = f"the start-up check of the provider failed: {exc.reason}"
            log.warning("Endpoint [%s] is not ready: %s", self.config.inference_id, self.not_ready_reason)
            return False
        if isinstance(answer, (TextEmbeddings, Embeddings)):
            self._learned_dimensions = answer.dimensions
        self._mark_ready()
        return True

    async def _check_chat(self) -> dict[str, Any]:
        request = ChatRequest(messages=[Message(role="user", content=CHECK_INPUT)], timeout=CHECK_TIMEOUT)
        chunks = self.chat(request)
        try:
            async for _chunk in chunks:
                pass
        finally:
            await chunks.aclose()
        return {}

    def check_request(self) -> InferenceRequest:
        task = self.config.task_type
        return InferenceRequest(
            task_type=task,
            input=[CHECK_INPUT],
            query=CHECK_INPUT if task == TaskType.RERANK else None,
            task_settings=self.config.task_settings.model_dump(exclude_none=True),
            timeout=CHECK_TIMEOUT,
        )

    async def _keep_checking(self) -> None:
        delay = 2.0
        while not self._ready:
            await asyncio.sleep(delay)
            if await self.check():
                return
            delay = min(RECHECK_MAX_DELAY, delay * 2)

    def _mark_ready(self) -> None:
        self._ready = True
        self.not_ready_reason = None

    def describe(self) -> dict[str, Any]:
        if self.config.task_type not in (TaskType.TEXT_EMBEDDING, TaskType.EMBEDDING):
            return {}
        settings = self.config.service_settings
        out: dict[str, Any] = {}
        dimensions = getattr(settings, "dimensions", None) or self._learned_dimensions
        if dimensions:
            out["dimensions"] = dimensions
        out["similarity"] = getattr(settings, "similarity", None) or self.default_similarity
        return out

    # ---- the hooks service modules use ----------------------------------------------
    def setting(self, name: str, default: Any = None) -> Any:
        value = getattr(self.config.service_settings, name, None)
        return default if value is None else value

    def secret(self, name: str) -> str:
        value = self.config.secret(name)
        return value or ""

    def base_url(self, default: str) -> str:
        """The catalog's ``url`` override, else the provider's own base URL (no trailing slash)."""
        return (self.setting("url") or default).rstrip("/")

    def provider_url(self, default: str, suffix: str, *, full: bool = False) -> str:
        """Where an operation goes: ``default`` (the provider's own URL of it), or the ``url``
        override. A bare host (``http://proxy:8080``) takes the provider's own path; a URL
        that already ends with ``suffix`` (``/embeddings``), or any URL where ``full`` says
        the setting is the whole URL of the operation (as Elasticsearch takes it for some
        services), is used as is; any other URL is a base that ``suffix`` is added to."""
        url = self.setting("url")
        if not url:
            return default
        parsed = urlsplit(url)
        if parsed.path in ("", "/") and not parsed.query:
            return url.rstrip("/") + urlsplit(default).path
        if full or parsed.path.rstrip("/").endswith(suffix):
            return url
        return url.rstrip("/") + suffix

    @staticmethod
    def input_type(request: InferenceRequest) -> str | None:
        """The request's input type (``ingest``, ``search``...), else the endpoint's task setting.

        Elasticsearch's internal variants (``internal_search``) count as their public ones.
        """
        value = request.input_type or request.task_settings.get("input_type")
        return value.removeprefix("internal_") if isinstance(value, str) else None

    async def authorize(self, request: httpx.Request) -> None:
        """Add credentials that depend on the moment or on the body (tokens, signatures)."""

    def _secret_values(self) -> list[str]:
        return [value.get_secret_value() for value in self.config.plain_secrets().values()]

    # ---- one request ----------------------------------------------------------------
    async def call_json(
        self,
        url: str,
        body: Any,
        request: InferenceRequest,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        method: str = "POST",
    ) -> Any:
        """Send ``body`` as JSON and return the provider's JSON answer, or raise."""
        response = await self._answer(method, url, body, headers, params, request.timeout, stream=False)
        try:
            return strict_json.loads(response.content)
        except strict_json.JSONRefused as exc:
            raise self.malformed(
                f"the answer is not JSON (content-type [{response.headers.get('content-type', '')}]): {exc}"
            ) from None

    @contextlib.asynccontextmanager
    async def open_stream(
        self,
        url: str,
        body: Any,
        request: InferenceRequest | ChatRequest,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """A streaming answer: connecting and the first byte must fit in the timeout, then
        each chunk must come within it, and within the server's stream limits (``stream_limits``)."""
        timeout = request.timeout
        response = await self._answer("POST", url, body, headers, params, timeout, stream=True)
        try:
            yield response
        except ElasticsearchError as exc:  # an error event of the provider's stream may quote anything
            raise ElasticsearchError(exc.status, exc.type, self.redact(exc.reason)) from None
        except httpx.TransportError as exc:
            if faults.is_timeout(exc):
                raise faults.timed_out(timeout, self.service) from None
            raise faults.unreachable(exc, self.service, self.redact) from None
        except ParseErrors as exc:
            raise self.malformed(f"a streamed event could not be read: {_describe(exc)}") from None
        finally:
            await response.aclose()

    async def _answer(self, method: str, url: str, body: Any, headers: dict[str, str] | None,
                      params: dict[str, str] | None, timeout: float, *, stream: bool) -> httpx.Response | Answer:
        """The provider's successful answer within the endpoint's rate limit and ``timeout``."""
        deadline = _deadline(asyncio.get_running_loop(), timeout)
        await self._take_slot(timeout)
        try:
            async with asyncio.timeout_at(deadline):
                return await self._send(method, url, body, headers, params, deadline, stream=stream)
        except TimeoutError:
            raise faults.timed_out(timeout, self.service) from None

    async def _take_slot(self, timeout: float) -> None:
        try:
            await self.rate_limiter.acquire(timeout)
        except ElasticsearchError:
            self.metrics.rate_limited.inc()
            raise

    async def _send(
        self,
        method: str,
        url: str,
        body: Any,
        headers: dict[str, str] | None,
        params: dict[str, str] | None,
        deadline: float | None,
        *,
        stream: bool,
    ) -> httpx.Response | Answer:
        loop = asyncio.get_running_loop()
        outbound = self.outbound
        if self._owns_outbound and not outbound.is_open:  # used before ``start``: on this loop
            await outbound.open()
        content = None if body is None else json_body(body)  # once, for every attempt

        async def attempt() -> httpx.Response | Answer:
            await self._wait_out_throttling(deadline)
            sent = loop.time()
            try:
                response = await outbound.send(method, url, content, headers, params, stream=stream,
                                               deadline_in=None if deadline is None else deadline - sent,
                                               authorize=self._authorize, service=self.service)
            except AnswerTooLarge as exc:
                self.metrics.call(None)
                raise self.malformed(f"{exc} (KUBEINFER_PROVIDER_MAX_ANSWER_SIZE)") from None
            except ForbiddenAddress as exc:  # the endpoint's own URL: no other try will go elsewhere
                self.metrics.call(None)
                raise ElasticsearchError(400, "status_exception", self.redact(str(exc))) from None
            except httpx.TransportError as exc:
                self.metrics.call(None)
                if faults.is_timeout(exc) and (deadline is None or loop.time() >= deadline - 0.01):
                    raise TimeoutError from None
                # A connection dropped or refused before the deadline: worth another try.
                raise retries.RetryableFailure(faults.unreachable(exc, self.service, self.redact)) from None
            self.metrics.call(response.status_code)
            self.metrics.duration.observe(loop.time() - sent)
            if response.is_success:
                self._throttle_streak = 0
                return response
            error = self.provider_error(response)
            if response.status_code == 429:
                self._note_throttled(response, error)
            if not retries.retryable(response):
                raise error
            raise retries.RetryableFailure(error, response)

        def before_retry(state: RetryCallState) -> None:
            self.metrics.retries.inc()
            failure = state.outcome.exception() if state.outcome is not None else None
            response = getattr(failure, "response", None)
            log.info(
                "Retrying request of endpoint [%s] to the [%s] service in %.2fs (attempt %d): status [%s]",
                self.config.inference_id, self.service, state.upcoming_sleep, state.attempt_number + 1,
                response.status_code if response is not None else "no answer",
            )

        return await retries.with_retries(attempt, deadline, loop.time, before_retry)

    def _note_throttled(self, response: httpx.Response | Answer, error: ElasticsearchError) -> None:
        """The provider said "slow down": every request of the endpoint waits, not just this one."""
        self._throttle_streak += 1
        asked = retries.retry_after(response)
        pause = asked if asked is not None else min(
            retries.MAX_DELAY, retries.BASE_DELAY * 2 ** (self._throttle_streak - 1))
        loop = asyncio.get_running_loop()
        self._quiet_until = max(self._quiet_until, loop.time() + pause)
        self._throttled = error

    async def _wait_out_throttling(self, deadline: float | None) -> None:
        loop = asyncio.get_running_loop()
        wait = self._quiet_until - loop.time()
        if wait <= 0:
            return
        if deadline is not None and loop.time() + wait >= deadline and self._throttled is not None:
            self.metrics.rate_limited.inc()
            raise ElasticsearchError(self._throttled.status, self._throttled.type, self._throttled.reason)
        await asyncio.sleep(wait)

    # ---- answers ----------------------------------------------------------------------
    def provider_error(self, response: httpx.Response | Answer) -> ElasticsearchError:
        return faults.provider_error(
            response, inference_id=self.config.inference_id, service=self.service, redact=self.redact
        )

    def malformed(self, detail: str) -> ElasticsearchError:
        return faults.malformed(self.service, self.config.inference_id, detail, self.redact)

    def translate(self, parse: Callable[..., Any], answer: Any, *args: Any) -> Any:
        """Run a pure parser over a provider answer; a shape it cannot read is a 502."""
        try:
            return parse(answer, *args)
        except ElasticsearchError:
            raise
        except ParseErrors as exc:
            raise self.malformed(_describe(exc)) from None

    def streaming_unsupported(self) -> ElasticsearchError:
        return ElasticsearchError(
            405, "status_exception",
            f"Streaming is not supported for this [{self.config.task_type}] endpoint of the [{self.service}] service",
        )

    def require_text(self, request: InferenceRequest) -> None:
        """Refuse ``embedding`` inputs other than one text each, for text-only models."""
        check_contents(self.service, request.contents)

    def unsupported(self, what: str) -> ElasticsearchError:
        return ElasticsearchError(
            400, "status_exception", f"The [{self.service}] service does not support {what}"
        )


def json_body(body: Any) -> bytes:
    """``body`` as JSON bytes, as compact as httpx writes them; orjson where it can write it."""
    try:
        return orjson.dumps(body)
    except TypeError:  # keys that are not strings, integers beyond 64 bits
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _deadline(loop: asyncio.AbstractEventLoop, timeout: float) -> float | None:
    """When the request must be answered by, in loop time; None for no limit."""
    return loop.time() + timeout if math.isfinite(timeout) else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing field [{exc.args[0] if exc.args else ''}]"
    if isinstance(exc, IndexError):
        return "a list is shorter than expected"
    return str(exc) or type(exc).__name__
