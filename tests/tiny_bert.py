"""Tiny random BERT models for tests: 2 layers, a small word-piece vocabulary, saved with
their tokenizer to a folder, so that the real loading code runs on them."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = (
    "the a an of to and in is it that for on with as was at by be this are from or have not but what all were "
    "when we there can more one if out so said who up which their about time will would how do each she "
    "cat cats dog dogs sat mat run runs fast slow red blue green sky sea rain sun moon paris france city "
    "capital weather today tomorrow hello world query passage search ingest fox jumps over lazy brown quick"
).split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PIECES = ["##s", "##ing", "##ed", "##er", "##ly", "##y"]
LETTERS = list("abcdefghijklmnopqrstuvwxyz")


def vocabulary() -> list[str]:
    return SPECIAL + WORDS + PIECES + LETTERS + ["##" + c for c in LETTERS] + list(".,?!")


def build_tiny_bert(folder: Path, head: str = "base", *, max_length: int = 32, seed: int = 0,
                    sentence_transformers: dict | None = None, embedding_rows: int | None = None) -> Path:
    """Save a 2-layer BERT (``base``, ``mlm`` or ``rerank`` head) and its tokenizer to ``folder``.

    ``embedding_rows`` gives the embedding matrix more rows than the vocabulary has words
    (32 floats each): a model as fast as the tiny one, with weights of a chosen size."""
    import torch
    from transformers import (BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel,
                              BertTokenizer)

    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocabulary()) + "\n")
    tokenizer = BertTokenizer(vocab=str(vocab_file), do_lower_case=True, model_max_length=max_length)
    tokenizer.save_pretrained(str(folder))
    config = BertConfig(
        vocab_size=max(len(vocabulary()), embedding_rows or 0), hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=48, max_position_embeddings=64, num_labels=1,
    )
    torch.manual_seed(seed)
    model = {"base": BertModel, "mlm": BertForMaskedLM, "rerank": BertForSequenceClassification}[head](config)
    if head == "mlm":
        # Random MLM heads give most logits a sign at random; a bias makes weights sparse yet non-empty.
        with torch.no_grad():
            model.cls.predictions.bias.fill_(-0.2)
    model.save_pretrained(str(folder))
    if sentence_transformers is not None:
        pooling = sentence_transformers.get("pooling", "mean")
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        if sentence_transformers.get("normalize", True):
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                            "type": "sentence_transformers.models.Normalize"})
        (folder / "modules.json").write_text(json.dumps(modules))
        (folder / "1_Pooling").mkdir(exist_ok=True)
        (folder / "1_Pooling" / "config.json").write_text(json.dumps({
            "word_embedding_dimension": 32,
            "pooling_mode_cls_token": pooling == "cls",
            "pooling_mode_mean_tokens": pooling == "mean",
            "pooling_mode_max_tokens": pooling == "max",
            "pooling_mode_mean_sqrt_len_tokens": False,
        }))
        (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_length}))
        if sentence_transformers.get("prompts"):
            (folder / "config_sentence_transformers.json").write_text(
                json.dumps({"prompts": sentence_transformers["prompts"]}))
    return folder
