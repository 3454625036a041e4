"""The documentation's services page says what the catalog holds: its table is generated
from the catalog when the site is built, and the site builds."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import yaml

from kubeinfer.catalog import SERVICES

ROOT = Path(__file__).resolve().parents[2]
TASKS = ["chat_completion", "completion", "embedding", "rerank", "sparse_embedding", "text_embedding"]


def generated_pages():
    spec = importlib.util.spec_from_file_location("docs_generated", ROOT / "docs" / "hooks" / "generated.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def services_matrix(markdown: str) -> dict[str, set[str]]:
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= len(TASKS) + 2:
            rows[cells[0].strip("`")] = {t for t, cell in zip(TASKS, cells[2:len(TASKS) + 2]) if cell == "✓"}
    return rows


def test_the_services_page_is_generated_and_holds_no_table_of_its_own():
    source = (ROOT / "docs" / "services.md").read_text()
    assert "<!-- generated: services -->" in source
    assert services_matrix(source) == {}
    assert "docs/hooks/generated.py" in yaml.safe_load((ROOT / "mkdocs.yml").read_text())["hooks"]


def test_services_matrix_matches_the_catalog():
    page = generated_pages().render((ROOT / "docs" / "services.md").read_text())
    assert services_matrix(page) == {name: {t.value for t in spec.task_types} for name, spec in SERVICES.items()}


def test_an_unknown_generated_table_fails_the_build():
    import pytest

    with pytest.raises(ValueError, match="unknown generated table"):
        generated_pages().render("<!-- generated: nonsense -->")


def test_the_site_builds_strictly_with_the_generated_pages(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    services = (site / "services" / "index.html").read_text()
    for name in SERVICES:
        assert f"<code>{name}</code>" in services, name
    cli = (site / "cli" / "index.html").read_text()
    assert "$ kubeinfer validate --help" in cli and "(default: 9200)" in cli
    settings = (site / "configuration" / "index.html").read_text()
    assert "KUBEINFER_MAX_INPUTS_PER_REQUEST" in settings
