"""pytest fixtures over the Kubernetes API emulator; import them into a conftest:

    from kubeemu.fixtures import kube, kubeconfig  # noqa: F401

``kube`` is a started ``EmulatedCluster`` (with InferenceEndpoints declared and a
Deployment controller stand-in); ``kubeconfig`` writes a kubeconfig for it and points
``KUBECONFIG`` at it, so kopf and the ``kubernetes`` client both find the emulator.
"""

from __future__ import annotations

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
