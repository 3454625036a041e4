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
from polling import wait_until

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
NAMESPACES = "v1/namespaces"
CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"


class EmulatedCluster:
    """Start with ``start()`` (or as a context manager); ``url`` is the API server's address."""

    def __init__(self, *, rollout_delay: float = 0.05, host: str = "127.0.0.1", port: int | None = None,
                 crds: bool = True, history_window: int = 200, bookmark_interval: float = 1.0):
        """``crds=False`` starts with no CRD installed (as a fresh cluster); by default the
        project's InferenceEndpoint CRD is, from crds/ as a user would apply it."""
        self._rollout_delay = rollout_delay
        self._crds = crds
        self._emulator_options = {"history_window": history_window, "bookmark_interval": bookmark_interval}
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
        self.emulator = KubeEmulator(**self._emulator_options)
        if self._crds:
            for path in sorted(CRDS_DIR.glob("*.yaml")):
                for doc in yaml.safe_load_all(path.read_text()):
                    self.emulator.create("apiextensions.k8s.io/v1/customresourcedefinitions", None, doc,
                                         manager="kubectl")
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
    def call(self, fn: Callable[..., T], *args: Any, call_timeout: float = 10, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the emulator's loop; its result within ``call_timeout`` seconds."""
        async def run() -> T:
            return fn(*args, **kwargs)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(call_timeout)

    def create(self, key: str, obj: dict[str, Any], namespace: str | None = None, *,
               admit: bool = True) -> dict[str, Any]:
        """Create an object, and its namespace first if there is none yet (as a test's set-up
        would). ``admit=False`` stores it unchecked, as an older CRD would have admitted it."""
        ns = namespace or obj.get("metadata", {}).get("namespace") or "default"

        def create() -> dict[str, Any]:
            if self.emulator._namespaced(key):
                self.emulator.ensure_namespace(ns)
            return self.emulator.create(key, ns, obj, admit=admit)
        return self.call(create)

    def create_namespace(self, name: str) -> None:
        self.call(self.emulator.ensure_namespace, name)

    def get(self, key: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.call(self.emulator.get, key, namespace, name)

    def list(self, key: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.call(self.emulator.list, key, namespace)

    def patch(self, key: str, namespace: str | None, name: str, patch: dict[str, Any], *,
              subresource: str | None = None) -> dict[str, Any]:
        return self.call(self.emulator.patch, key, namespace, name, patch, "merge", subresource=subresource)

    def delete(self, key: str, namespace: str | None, name: str, *, propagation: str | None = None) -> dict[str, Any]:
        return self.call(self.emulator.delete, key, namespace, name, propagation=propagation)

    def compact(self) -> None:
        """Expire every resourceVersion seen so far: watches resumed from them get 410 Gone."""
        self.call(self.emulator.compact)

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
        return wait_until(predicate, timeout=timeout, interval=interval, message=message)
