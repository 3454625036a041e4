"""The services matrix in the README says what the catalog holds."""

from __future__ import annotations

from pathlib import Path

from kubeinfer.catalog import SERVICES

ROOT = Path(__file__).resolve().parents[2]
TASKS = ["chat_completion", "completion", "embedding", "rerank", "sparse_embedding", "text_embedding"]


def services_section() -> str:
    text = (ROOT / "README.md").read_text()
    assert "## Services" in text, "no '## Services' section in the README"
    return text.split("## Services", 1)[1].split("\n## ", 1)[0]


def test_services_matrix_matches_the_catalog():
    rows = {}
    for line in services_section().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= len(TASKS) + 1:
            rows[cells[0].strip("`")] = {t for t, cell in zip(TASKS, cells[1:len(TASKS) + 1]) if cell == "✓"}
    assert rows == {name: {t.value for t in spec.task_types} for name, spec in SERVICES.items()}
