"""The layering the project relies on: every catalog service is served, and the
import contracts in pyproject hold (make test runs lint-imports as well)."""

import shutil
import subprocess
import sys
from pathlib import Path

from kubeinfer.catalog import SERVICES
from model_server.backends.registry import BACKENDS

ROOT = Path(__file__).resolve().parents[2]


def test_every_catalog_service_has_a_backend_and_no_backend_lacks_a_service():
    assert set(BACKENDS) == set(SERVICES)


def test_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is part of the dev extra"
    proc = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_the_catalog_names_no_backend_even_in_a_string():
    for source in (ROOT / "kubeinfer" / "catalog").glob("*.py"):
        assert "model_server" not in source.read_text(), source
