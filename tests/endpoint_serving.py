"""Serving one endpoint in-process for tests: the real serve app and backend, over ASGI."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

import httpx


async def wait_ready(backend: Any, failures: list[BaseException] = (), timeout: float = 120.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not backend.ready:
        if failures:
            raise failures[0]
        if loop.time() > deadline:
            raise TimeoutError("backend did not become ready")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def serving(config, **options: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The serve app for ``config`` with its real backend started (lifespan run), over ASGI."""
    from model_server.api.serve import build_app
    from model_server.backends.registry import create_backend

    backend = create_backend(config, **options)
    failures: list[BaseException] = []
    app = build_app(config, backend, on_start_failure=failures.append)
    async with app.router.lifespan_context(app):
        await wait_ready(backend, failures)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            yield client, backend
