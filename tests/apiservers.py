"""The API servers the integration tests run on, side by side: tests/kubeemu (in-process,
fast, with faults on demand) and Kubernetes' own control plane (tests/controlplane).

A test module parametrizes its cluster fixture with ``API_SERVERS`` and opens it with
``api_server``; a test that needs what only the emulator offers (held rollouts, injected
faults, recorded requests) says so with ``emulator_only``.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import pytest
from kubeemu import EmulatedCluster
from kubeemu.cluster import CRDS_DIR

API_SERVERS = ["emulator", pytest.param("real", marks=pytest.mark.real_cluster)]


def emulator_only(fixture: str = "kube"):
    """Run a test on the emulator alone (parametrizing its cluster fixture indirectly)."""
    return pytest.mark.parametrize(fixture, ["emulator"], indirect=True)


@contextlib.contextmanager
def api_server(request: pytest.FixtureRequest, kind: str, *, crds: bool = True) -> Iterator[object]:
    """A cluster with the calls of ``EmulatedCluster``: a fresh emulator, or the run's real
    control plane (reset after the test), with the project's CRD installed unless ``crds``
    is false."""
    if kind == "emulator":
        with EmulatedCluster(crds=crds) as cluster:
            yield cluster
        return
    cluster = request.getfixturevalue("real_kube")
    if crds:
        cluster.install_crds(CRDS_DIR)
    yield cluster
