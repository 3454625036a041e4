"""Dynamic batching: concurrent requests merged into model batches.

Callers ``submit`` already-tokenized items and await their own results, in order. One
serving task forms batches and runs them on a single worker thread, so the event loop
keeps accepting (and tokenizing) requests while the model computes: whatever arrives
during a forward pass is the next batch, and it goes to the model as soon as the pass ends,
before the finished batch's callers are answered (answering 64 of them keeps the event
loop busy for milliseconds the model would otherwise spend idle). A batch is seeded with the oldest waiting item
(nothing starves) and filled with the waiting items closest to it in length (little
padding), under ``max_batch_size`` items and ``max_batch_tokens`` padded tokens. While
fewer items wait than the last batch held, the batch waits up to ``max_wait`` for them:
a lone client never waits, a crowd is not cut into small batches.

The queue is bounded: past ``queue_capacity`` requests in flight, ``submit`` refuses at
once with Elasticsearch's 429 instead of queueing without bound. A request whose
deadline passes while waiting is answered 408 and its items never reach the model.

Knows nothing of torch or HTTP: ``run_batch`` is any function of a list of items.
"""

from __future__ import annotations

import asyncio
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Generic, Mapping, Sequence, Sized, TypeVar

from prometheus_client import Counter, Gauge, Histogram

from kubeinfer.errors import ElasticsearchError, status_exception

log = logging.getLogger(__name__)

Item = TypeVar("Item", bound=Sized)

BATCH_SIZE = Histogram(
    "kubeinfer_batch_size", "Inputs per model forward pass.", ["inference_id"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
BATCH_TOKENS = Histogram(
    "kubeinfer_batch_tokens", "Padded tokens per model forward pass.", ["inference_id"],
    buckets=(16, 64, 256, 1024, 4096, 16384, 65536),
)
BATCH_SECONDS = Histogram(
    "kubeinfer_batch_duration_seconds", "Time of one model forward pass, post-processing included.", ["inference_id"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
QUEUE_DEPTH = Gauge("kubeinfer_queue_depth", "Inputs waiting for a batch.", ["inference_id"])
IN_FLIGHT = Gauge("kubeinfer_requests_in_flight", "Requests admitted and not yet answered.", ["inference_id"])
TOKENS = Counter("kubeinfer_tokens_processed_total", "Tokens run through the model, padding excluded.",
                 ["inference_id"])
REJECTED = Counter("kubeinfer_requests_rejected_total", "Requests refused because the queue was full.",
                   ["inference_id"])

QUEUE_FULL_REASON = "inference process queue is full. Unable to execute command"


@dataclass(frozen=True)
class BatchingOptions:
    max_batch_size: int = 64
    # Text Embeddings Inference's default budget.
    max_batch_tokens: int = 16384
    # The longest a batch waits for company, and only while fewer items wait than the last
    # batch held: a lone client never waits, and under load the requests that come back
    # right after a large batch join the next one instead of trickling through in small ones.
    max_wait: float = 0.005
    # Elasticsearch's default queue_capacity for model deployments.
    queue_capacity: int = 1024

    @classmethod
    def resolve(cls, options: Mapping[str, Any] | None = None, **defaults: Any) -> "BatchingOptions":
        """Explicit options over ``defaults`` (the deployment's settings, the model's needs)
        over the class defaults."""
        values: dict[str, Any] = dict(defaults)
        values.update({k: v for k, v in (options or {}).items() if k in cls.__dataclass_fields__ and v is not None})
        return cls(**values)


class _Job:
    """One request: its futures' results slots, filled as its items come out of batches."""

    __slots__ = ("future", "results", "remaining", "deadline")

    def __init__(self, future: asyncio.Future, size: int, deadline: float) -> None:
        self.future = future
        self.results: list[Any] = [None] * size
        self.remaining = size
        self.deadline = deadline

    @property
    def done(self) -> bool:
        return self.future.done()

    def deliver(self, index: int, value: Any) -> None:
        if self.future.done():
            return
        self.results[index] = value
        self.remaining -= 1
        if self.remaining == 0:
            self.future.set_result(self.results)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


@dataclass(eq=False)
class _Waiting:
    job: _Job
    index: int
    item: Any
    size: int


@dataclass(eq=False)
class _Running:
    """A batch on the model's thread."""

    batch: list[_Waiting]
    started: float
    outputs: asyncio.Future


class DynamicBatcher(Generic[Item]):
    def __init__(
        self,
        run_batch: Callable[[list[Item]], list[Any]],
        *,
        name: str,
        options: BatchingOptions = BatchingOptions(),
        worker_init: Callable[[], None] | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.name = name
        self.options = options
        self._worker_init = worker_init
        self._waiting: list[_Waiting] = []
        # Every job not yet answered, queued or on the model: closing fails them all at once.
        self._jobs: set[_Job] = set()
        self._in_flight = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._metrics = {
            "size": BATCH_SIZE.labels(name), "tokens": BATCH_TOKENS.labels(name),
            "seconds": BATCH_SECONDS.labels(name), "depth": QUEUE_DEPTH.labels(name),
            "in_flight": IN_FLIGHT.labels(name), "processed": TOKENS.labels(name), "rejected": REJECTED.labels(name),
        }

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"model-{self.name}", initializer=self._worker_init)
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._serve(), name=f"batcher-{self.name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        # Deleted, updated or shutting down: nobody waits for an answer that will not come.
        closing = status_exception(
            f"inference endpoint [{self.name}] was stopped (deleted, updated or shut down) before it answered", 409)
        for job in list(self._jobs):
            job.fail(closing)
        self._jobs.clear()
        self._waiting.clear()
        executor, self._executor = self._executor, None
        if executor is not None:
            # The batch on the model, if any, ends first: its model can then be let go of.
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    async def on_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the model's worker thread, outside the queue (loading, warm-up).

        Torch work belongs on that one thread: a second thread running ops would start a
        second pool of spinning OpenMP threads competing for the same cores.
        """
        assert self._executor is not None, "start() first"
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ---- callers -----------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    async def submit(self, items: Sequence[Item], timeout: float = math.inf) -> list[Any]:
        """Each item's result, in the order given."""
        if self._task is None or self._wakeup is None:
            raise status_exception(f"inference endpoint [{self.name}] is not started", 503)
        if not items:
            return []
        if self._in_flight >= self.options.queue_capacity:
            self._metrics["rejected"].inc()
            raise status_exception(QUEUE_FULL_REASON, 429)
        loop = asyncio.get_running_loop()
        job = _Job(loop.create_future(), len(items), loop.time() + timeout)
        self._jobs.add(job)
        self._waiting.extend(_Waiting(job, i, item, len(item)) for i, item in enumerate(items))
        self._metrics["depth"].set(len(self._waiting))
        self._wakeup.set()
        self._in_flight += 1
        self._metrics["in_flight"].set(self._in_flight)
        try:
            return await job.future
        finally:
            self._jobs.discard(job)
            self._in_flight -= 1
            self._metrics["in_flight"].set(self._in_flight)

    # ---- the serving task ----------------------------------------------------------------
    async def _serve(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        last_size = 0
        running: _Running | None = None
        while True:
            if running is None:
                await self._wakeup.wait()
                await self._gather_company(loop, min(last_size, self.options.max_batch_size))
                running = self._start(loop, self._next_batch(loop))
                if running is not None:
                    last_size = len(running.batch)
                continue
            try:
                outcome: list[Any] | BaseException = await running.outputs
            except Exception as exc:  # the model failed on a batch: its callers learn it, the server goes on
                outcome = exc
            # The model is idle from here: give it what waits before answering this batch's
            # callers, whose responses keep the event loop busy for a while.
            finished, running = running, self._start(loop, self._next_batch(loop) if self._waiting else [])
            if running is not None:
                last_size = len(running.batch)
            self._finish(loop, finished, outcome)

    def _next_batch(self, loop: asyncio.AbstractEventLoop) -> list[_Waiting]:
        assert self._wakeup is not None
        batch = self._take(loop.time())
        if not self._waiting:
            self._wakeup.clear()
        self._metrics["depth"].set(len(self._waiting))
        return batch

    async def _gather_company(self, loop: asyncio.AbstractEventLoop, expected: int) -> None:
        """Wait up to ``max_wait`` while fewer than ``expected`` items are waiting."""
        assert self._wakeup is not None
        deadline = loop.time() + self.options.max_wait
        while len(self._waiting) < expected:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return
            finally:
                self._wakeup.set()

    def _take(self, now: float) -> list[_Waiting]:
        """The next batch: the oldest live item plus the live items nearest to it in length."""
        live = []
        for waiting in self._waiting:
            if waiting.job.done:
                continue
            if waiting.job.deadline <= now:
                waiting.job.fail(status_exception("timeout waiting for inference result", 408))
                continue
            live.append(waiting)
        if not live:
            self._waiting = []
            return []
        seed, rest = live[0], live[1:]
        chosen, width = [seed], seed.size
        budget, limit = self.options.max_batch_tokens, self.options.max_batch_size
        for waiting in sorted(rest, key=lambda w: abs(w.size - seed.size)):
            if len(chosen) >= limit:
                break
            wider = max(width, waiting.size)
            if wider * (len(chosen) + 1) > budget:
                continue
            chosen.append(waiting)
            width = wider
        taken = set(map(id, chosen))
        self._waiting = [w for w in live if id(w) not in taken]
        chosen.sort(key=lambda w: w.size)
        return chosen

    def _start(self, loop: asyncio.AbstractEventLoop, batch: list[_Waiting]) -> _Running | None:
        if not batch:
            return None
        outputs = loop.run_in_executor(self._executor, self.run_batch, [w.item for w in batch])
        return _Running(batch, loop.time(), outputs)

    def _finish(self, loop: asyncio.AbstractEventLoop, running: _Running, outcome: list[Any] | BaseException) -> None:
        batch = running.batch
        if isinstance(outcome, BaseException):
            log.error("batch of %d inputs failed on [%s]", len(batch), self.name, exc_info=outcome)
            error = outcome if isinstance(outcome, ElasticsearchError) else status_exception(
                f"inference failed on [{self.name}]: {type(outcome).__name__}", 500)
            for waiting in batch:
                waiting.job.fail(error)
            return
        self._metrics["seconds"].observe(loop.time() - running.started)
        self._metrics["size"].observe(len(batch))
        self._metrics["tokens"].observe(max(w.size for w in batch) * len(batch))
        self._metrics["processed"].inc(sum(w.size for w in batch))
        for waiting, output in zip(batch, outcome):
            waiting.job.deliver(waiting.index, output)
