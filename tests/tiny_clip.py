"""A tiny random CLIP model for tests: 2-layer text and vision towers, a byte-level BPE
tokenizer and an image processor saved to a folder, so that the real loading code runs;
and PNG images written byte by byte, as base64 data URIs."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path

IMAGE_SIZE = 16
PROJECTION_DIM = 24


def _byte_characters() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values, which CLIP's BPE vocabulary starts from."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def build_tiny_clip(folder: Path, *, seed: int = 0) -> Path:
    """Save a tiny ``CLIPModel`` with its tokenizer and image processor to ``folder``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    characters = _byte_characters()
    vocab = characters + [c + "</w>" for c in characters] + ["<|startoftext|>", "<|endoftext|>"]
    tokenizer = CLIPTokenizer(vocab={token: i for i, token in enumerate(vocab)}, merges=[], model_max_length=16)
    tokenizer.save_pretrained(str(folder))
    processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                   crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor.save_pretrained(str(folder))
    tower = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), max_position_embeddings=16, eos_token_id=len(vocab) - 1,
                         bos_token_id=len(vocab) - 2, pad_token_id=len(vocab) - 1, **tower),
        vision_config=dict(image_size=IMAGE_SIZE, patch_size=4, **tower),
        projection_dim=PROJECTION_DIM,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(str(folder))
    (folder / "config.json").write_text(json.dumps(json.loads((folder / "config.json").read_text()), indent=1))
    return folder


def png(width: int, height: int, rgb: tuple[int, int, int], stripe: tuple[int, int, int] | None = None) -> bytes:
    """An RGB PNG of one colour (every other row ``stripe`` when given), written without an imaging library."""
    rows = b"".join(b"\x00" + bytes((stripe if stripe and y % 2 else rgb) * width) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def data_uri(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"
