"""The kind install run (tests/e2e/kind-install.sh) under pytest: build the images, install
kubeinfer on a kind cluster with Helm and with kubectl, serve a built-in and a provider
endpoint through the gateway.

Needs docker and kind, and network access; skipped where either tool is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("kind-install.sh")
MISSING = [tool for tool in ("docker", "kind") if shutil.which(tool) is None]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bool(MISSING), reason=f"the kind install run needs {' and '.join(MISSING)} on PATH"),
]


@pytest.mark.parametrize("install", ["helm", "kustomize"])
def test_install_on_kind_serves_both_endpoint_families(install):
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "KUBEINFER_E2E_INSTALL": install})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert f"installed with {install} on kind serves both endpoint families" in proc.stdout
