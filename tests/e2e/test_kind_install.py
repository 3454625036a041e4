"""The kind install run (tests/e2e/kind-install.sh) under pytest: build the images, install
the chart on a kind cluster, serve a built-in and a provider endpoint through the gateway.

Needs docker and kind, and network access; skipped where either tool is missing.
"""

from __future__ import annotations

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


def test_helm_install_on_kind_serves_both_endpoint_families():
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert "serves both endpoint families" in proc.stdout
