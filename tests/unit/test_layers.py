"""The layering the project relies on: every catalog service is served, and the
import contracts in pyproject hold (make test runs lint-imports as well)."""

import shutil
import subprocess
import sys
from pathlib import Path

from kubeinfer.catalog import SERVICES
from model_server.backends.providers.openai_compatible import PROVIDERS
from model_server.backends.registry import BACKENDS, OPENAI_COMPATIBLE, factory_of

ROOT = Path(__file__).resolve().parents[2]


def test_every_catalog_service_has_a_backend_and_no_backend_lacks_a_service():
    assert set(BACKENDS) == set(SERVICES)
    assert set(OPENAI_COMPATIBLE) == set(PROVIDERS)
    for service in BACKENDS:
        assert callable(factory_of(service)), service


def test_a_model_server_start_imports_no_provider_client():
    """The CPU server's start: the registry and the serve command import no provider module."""
    code = ("import sys; import model_server.api.serve; "
            "print(sorted(m for m in sys.modules if m.startswith('model_server.backends.providers') or m == 'aiohttp'))")
    proc = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is part of the dev extra"
    proc = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_the_catalog_names_no_backend_even_in_a_string():
    for source in (ROOT / "kubeinfer" / "catalog").glob("*.py"):
        assert "model_server" not in source.read_text(), source


def test_the_docs_map_names_every_core_and_operator_module_and_nothing_that_is_gone():
    import re

    text = (ROOT / "docs" / "development.md").read_text()
    assert "## Map of the code" in text
    section = text.split("## Map of the code", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z_]+\.py)`", section))
    modules = {p.name for folder in ("kubeinfer", "operator") for p in (ROOT / folder).glob("*.py")}
    assert modules - {"__init__.py"} - named == set(), "modules the map does not name"
    existing = {p.name for folder in ("kubeinfer", "operator", "model_server", "tests")
                for p in (ROOT / folder).rglob("*.py")}
    assert named - existing == set(), "modules the map names that do not exist"


def test_no_module_imports_another_modules_private_names():
    import ast

    found = []
    for folder in ("kubeinfer", "operator", "model_server"):
        for source in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.ImportFrom):
                    found += [f"{source.relative_to(ROOT)}: {node.module}.{alias.name}" for alias in node.names
                              if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert found == [], "use public names across modules"
