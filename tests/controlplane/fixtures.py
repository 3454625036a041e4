"""pytest fixtures over a real control plane; import them into a conftest:

    from controlplane.fixtures import control_plane, real_kube  # noqa: F401

``control_plane`` starts one cluster for the whole run (a cold start takes seconds, a
cold build minutes); ``real_kube`` hands it to one test and leaves it as it found it.
Where Go is missing (a contributor's laptop) the tests that use them skip, naming why,
unless ``KUBEINFER_REQUIRE_TOOLS`` is set, as make sets it.
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from .client import RealCluster
from .cluster import ControlPlane, ToolMissing, build


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory) -> Iterator[RealCluster]:
    try:
        build(quiet=True)
    except ToolMissing as missing:
        if os.environ.get("KUBEINFER_REQUIRE_TOOLS"):
            pytest.fail(str(missing))
        pytest.skip(str(missing))
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane")).up()
    cluster = RealCluster(plane)
    try:
        yield cluster
    finally:
        cluster.close()
        plane.down()


@pytest.fixture
def real_kube(control_plane: RealCluster) -> Iterator[RealCluster]:
    yield control_plane
    control_plane.reset()
