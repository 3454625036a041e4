"""A running emulator in a thread of its own, with a synchronous handle for tests.

The emulator's event loop lives in a background thread, so that the code under test
(kopf in ``KopfRunner``'s thread, an HTTP gateway, a blocking client) and the test body
never share a loop with it: no test can stall the API server by blocking. Every call on
``EmulatedCluster`` runs inside the emulator's loop and returns its result.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import kmock
import yaml

from .controllers import DeploymentController
from .emulator import KubeEmulator

T = TypeVar("T")

INFERENCE_ENDPOINTS = "kubeinfer.io/v1alpha1/inferenceendpoints"
DEPLOYMENTS = "apps/v1/deployments"
SERVICES = "v1/services"
CONFIGMAPS = "v1/configmaps"
SECRETS = "v1/secrets"
HPAS = "autoscaling/v2/horizontalpodautoscalers"
EVENTS = "v1/events"


class EmulatedCluster:
    """Start with ``start()`` (or as a context manager); ``url`` is the API server's address."""

    def __init__(self, *, rollout_delay: float = 0.05, host: str = "127.0.0.1", port: int | None = None):
        self._rollout_delay = rollout_delay
        self._host, self._port = host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kube-emulator", daemon=True)
        self._stop: asyncio.Event | None = None
        self._served = threading.Event()
        self.emulator: KubeEmulator
        self.deployments: DeploymentController
        self.url = ""

    # ---- life cycle -----------------------------------------------------------------------
    def start(self) -> "EmulatedCluster":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        if not self._served.wait(10):
            raise RuntimeError("the Kubernetes API emulator did not start")
        return self

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self.emulator = KubeEmulator()
        self.emulator.declare(INFERENCE_ENDPOINTS, "InferenceEndpoint", subresources=["status"])
        self.deployments = DeploymentController(emulator=self.emulator, delay=self._rollout_delay)
        async with self.emulator, kmock.Server(self.emulator, host=self._host, port=self._port) as server:
            self.url = str(server.url).rstrip("/")
            self._served.set()
            await self._stop.wait()

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            time.sleep(0.05)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> "EmulatedCluster":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path, *, token: str = "emulator-token") -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": {"token": token}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator",
                                                          "namespace": "default"}}],
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # ---- calls into the emulator's loop ---------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async def run() -> T:
            return fn(*args, **kwargs)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def create(self, key: str, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        ns = namespace or obj.get("metadata", {}).get("namespace") or "default"
        return self.call(self.emulator.create, key, ns, obj)

    def get(self, key: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.call(self.emulator.get, key, namespace, name)

    def list(self, key: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.call(self.emulator.list, key, namespace)

    def patch(self, key: str, namespace: str | None, name: str, patch: dict[str, Any], *,
              subresource: str | None = None) -> dict[str, Any]:
        return self.call(self.emulator.patch, key, namespace, name, patch, "merge", subresource=subresource)

    def delete(self, key: str, namespace: str | None, name: str) -> dict[str, Any]:
        return self.call(self.emulator.delete, key, namespace, name)

    def hold_rollouts(self) -> None:
        self.call(self.deployments.hold)

    def release_rollouts(self) -> None:
        self.call(self.deployments.release)

    def fail_rollout(self, namespace: str, name: str, message: str = "ImagePullBackOff") -> None:
        self.call(self.deployments.fail, namespace, name, message)

    def requests(self) -> list[kmock.Request]:
        return self.call(lambda: list(self.emulator._requests))

    def wait_until(self, predicate: Callable[[], T], *, timeout: float = 15.0, interval: float = 0.05,
                   message: str = "") -> T:
        """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
            time.sleep(interval)
