"""Local mode gives a deleted local model's memory back: creating, calling and deleting
the same endpoint again and again leaves the process's resident memory where it was, as
a user watching ``kubeinfer local`` in ``top`` would check it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from local_mode import LocalMode
from tiny_bert import build_tiny_bert

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

MIB = 1 << 20
# 400,000 rows of 32 floats: about 49 MiB of weights, held once by torch and once by ONNX
# Runtime while the endpoint lives, and run as fast as the tiny model.
EMBEDDING_ROWS = 400_000
CYCLES = 8
WARM_UP = 3


def resident(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_deleting_a_local_model_gives_its_memory_back(tmp_path):
    model = build_tiny_bert(tmp_path / "model", "base", sentence_transformers={}, embedding_rows=EMBEDDING_ROWS)
    body = {"service": "elasticsearch",
            "service_settings": {"model_id": str(model), "num_allocations": 1, "num_threads": 1}}
    after_delete = []
    with LocalMode(state_dir=tmp_path / "state", env={"HF_HOME": str(tmp_path / "hf")}) as local:
        for _ in range(CYCLES):
            created = local.client.put("/_inference/text_embedding/weighty", json=body)
            assert created.status_code == 200, created.text
            answer = local.client.post("/_inference/text_embedding/weighty", json={"input": ["hello world"]})
            assert answer.status_code == 200, answer.text
            assert local.client.delete("/_inference/weighty").status_code == 200
            after_delete.append(resident(local.process.pid))
    # Each model kept would add about 50 MiB (one more at each of Python's rare full
    # collections): the bound leaves room for the allocator's noise.
    growth = max(after_delete[WARM_UP:]) - after_delete[WARM_UP - 1]
    assert growth < 40 * MIB, [round(r / MIB) for r in after_delete]
