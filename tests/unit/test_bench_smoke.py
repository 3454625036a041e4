"""Benchmarks that cannot rot: each script under bench/ runs its ``--smoke`` mode (a few
seconds, tiny sizes) to the end and prints its table. Timings are never asserted."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


# A named baseline that is not a kubeinfer dependency: (its module, how the script says to install it).
BASELINES = {
    "embeddings.py": ("infinity_emb", "pip install 'infinity-emb[torch]' torch==2.13.0"),
    "proxy.py": ("litellm", "pip install 'litellm[proxy]' torch==2.13.0"),
}


@pytest.mark.parametrize("script, table_head", [
    ("embeddings.py", "| server | clients | embeddings/s |"),
    ("gateway.py", "gateway vs nginx: throughput x"),
    ("proxy.py", "target     seq p50 ms"),
    ("cold_start.py", "| case | seconds | x warm request |"),
    ("operator.py", "beside 40 unrelated Secrets and Deployments: peak RSS"),
    ("pools.py", "pool vs two servers: memory x"),
])
def test_benchmark_smoke_run_completes_and_prints_its_table(script, table_head):
    env = {**os.environ, "PYTHONSAFEPATH": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-P", str(BENCH / script), "--smoke"], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert table_head in done.stdout, done.stdout[-3000:]
    module, install = BASELINES.get(script, (None, None))
    if module and importlib.util.find_spec(module) is None:
        # Without its baseline the benchmark still runs, and says how to measure the baseline.
        assert install in done.stdout + done.stderr
