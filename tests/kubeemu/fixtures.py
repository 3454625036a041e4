"""pytest fixtures over the Kubernetes API emulator; import them into a conftest:

    from kubeemu.fixtures import kube, kubeconfig, kubeinfer_operator  # noqa: F401

``kube`` is a started ``EmulatedCluster`` (with the project's CRD installed from crds/ and a
Deployment controller stand-in); ``kubeconfig`` writes a kubeconfig for it and points
``KUBECONFIG`` at it, so kopf and the project's own client both find the emulator;
``kubeinfer_operator`` runs the real operator against it (CPU endpoints, no metrics
port) for tests of what sits on top, such as the gateway.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import pytest

from .cluster import EmulatedCluster


@pytest.fixture
def kube() -> Iterator[EmulatedCluster]:
    with EmulatedCluster() as cluster:
        yield cluster


@pytest.fixture
def kubeconfig(kube: EmulatedCluster, tmp_path, monkeypatch) -> str:
    path = kube.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(path))
    return str(path)


@contextlib.contextmanager
def running_operator(timeout: float = 30) -> Iterator[object]:
    """The kubeinfer operator under kopf's ``KopfRunner``; it must stop cleanly."""
    from kopf.testing import KopfRunner

    with KopfRunner(["run", "--standalone", "--all-namespaces", "-m", "kubeinfer_operator.handlers"],
                    timeout=timeout) as runner:
        yield runner
    assert runner.exception is None, runner.output[-4000:]


@pytest.fixture
def kubeinfer_operator(kube: EmulatedCluster, kubeconfig: str, monkeypatch) -> Iterator[object]:
    monkeypatch.setenv("KUBEINFER_METRICS_PORT", "0")
    monkeypatch.setenv("KUBEINFER_GPUS_PER_ENDPOINT", "0")
    with running_operator() as runner:
        yield runner
