"""``bench/operator.py --smoke``: the operator benchmark still runs to its report (a tiny
size, beside a few unrelated objects), so that it cannot rot between real runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_operator_benchmark_smoke_run_completes_and_reports():
    run = subprocess.run([sys.executable, "-P", str(ROOT / "bench" / "operator.py"), "--smoke"],
                         capture_output=True, text=True, timeout=240, cwd=ROOT,
                         env={**os.environ, "PYTHONSAFEPATH": "1"})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    lines = run.stdout.splitlines()
    header = next(line for line in lines if line.split()[:2] == ["endpoints", "unrelated"])
    rows = [line.split() for line in lines[lines.index(header) + 1:]
            if line.split()[:1] == ["4"] and line.split()[1].isdigit()]
    assert [row[1] for row in rows] == ["0", "40"]
    assert "watch ev/CR" in header and "peak RSS MiB" in header
    assert any(line.startswith("beside 40 unrelated") for line in lines)
