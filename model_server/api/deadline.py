"""The one deadline of a request: Elasticsearch's 408 once its ``timeout`` has passed.

Every place that waits on a caller's behalf (an inference, a stream's first chunk, an
OpenAI route, a request held while its endpoint wakes) bounds the wait with ``deadline``,
so that the limit, the infinite ``-1`` and the error read the same everywhere. This module
knows no route and no backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import AsyncIterator

from kubeinfer.errors import ElasticsearchError, status_exception
from .inference_request import format_time_value

# A limit this long (about 31 years) is no limit: event loops count time in integers
# (uvloop in milliseconds) that a longer one overflows.
FOREVER = 1e9


def wait_limit(seconds: float) -> float | None:
    """``seconds`` as asyncio and HTTP clients take a limit: None for none (``-1``, ``math.inf``)."""
    return None if not math.isfinite(seconds) or seconds >= FOREVER else seconds


def timed_out(seconds: float, setting: str | None = None) -> ElasticsearchError:
    """Elasticsearch's 408 for an answer that did not come within ``seconds``; ``setting``
    names the limit that cut the wait short when it was not the request's own."""
    named = f" ({setting})" if setting else ""
    return status_exception(f"timeout [{format_time_value(seconds)}]{named} waiting for inference result", 408)


@contextlib.asynccontextmanager
async def deadline(seconds: float, setting: str | None = None) -> AsyncIterator[None]:
    """Run the block within ``seconds`` (``math.inf``, Elasticsearch's ``-1``: no limit), or
    raise ``timed_out``. One deadline on the task, not a task per wait as ``wait_for`` makes;
    a ``TimeoutError`` the block raises itself goes on as it is."""
    limit = asyncio.timeout(wait_limit(seconds))
    try:
        async with limit:
            yield
    except TimeoutError:
        if not limit.expired():
            raise
        raise timed_out(seconds, setting) from None
