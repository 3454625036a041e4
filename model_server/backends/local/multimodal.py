"""Image-and-text embedding models (CLIP and its kin), as torch code: the ``embedding`` task.

A model folder with a tokenizer, an image processor and a transformers model that has
``get_text_features`` and ``get_image_features`` (``CLIPModel``, ``SiglipModel``...) puts
texts and images in one vector space. Each content item is prepared on the caller's side
(``encode_contents``: texts tokenized and truncated to the text tower's length, images
decoded from their data URIs and resized by the image processor) and run in batches on
the worker's side (``run``: one pass of the text tower over the batch's texts, one of
the vision tower over its images, each vector L2-normalised). An item's size, for the
batcher's token budget, is its token count, or the vision tower's patches for an image.

A group of several items (Elasticsearch's ``content`` array) gives one vector: the
normalised mean of its items' vectors, which for CLIP-style models is the point between
the text and the image it describes.

On CPU in float32 (``use_onnx``) both towers, from token ids or pixels to the projected
vector, are exported to ONNX into the model cache (beside the text models' exports, under
the model's name and revision) and served by ONNX Runtime once they agree with torch on
the check sentences and a few drawn images (mean cosine ``FP32_MIN_COSINE``); otherwise
torch serves them, with a log line. There is no int8 for these models, and no export for
the torch-less server: preparing images is torch code here.

Imports torch, transformers and Pillow: only the local backend's loading path imports it.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from kubeinfer.errors import ElasticsearchError
from ..content import IMAGE, ContentItem, decode_data_uri
from .inputs import CHECK_SENTENCES, Encoded
from .runtime import Runtime

log = logging.getLogger(__name__)

_SANE_MAX_LENGTH = 1_000_000
# The exports' folder in the model cache, beside the text models' ``<AutoClass>-v<format>``.
EXPORT_NAME = "ImageText"
TORCHSCRIPT_OPSET = 17


@dataclass(frozen=True)
class ImageItem:
    """One image, resized and normalised by the model's image processor."""

    pixels: torch.Tensor
    patches: int

    def __len__(self) -> int:
        return self.patches


def _cosine(a: list[float], b: list[float]) -> float:
    return float(F.cosine_similarity(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)))


def _features(output: Any) -> torch.Tensor:
    # transformers 5 wraps the projected vectors in an output object; 4 returns them bare.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class _TextTower(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))


class _VisionTower(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_image_features(pixel_values=pixel_values))


class _OnnxTower:
    """An ONNX Runtime session called as the torch tower it replaces: tensors in, a tensor out."""

    def __init__(self, folder: Path, threads: int) -> None:
        from .exported import session

        self.session = session(folder, threads)
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        import numpy as np

        (output,) = self.session.run(None, {name: t.cpu().numpy() for name, t in zip(self.names, tensors)})
        return torch.from_numpy(np.asarray(output))


class ImageTextEmbeddingModel:
    """A text tower and a vision tower sharing one vector space; ``run`` from one worker thread."""

    def __init__(self, path: Path, runtime: Runtime) -> None:
        import transformers

        self.path = path
        self.runtime = runtime
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
        self.model = transformers.AutoModel.from_pretrained(str(path), dtype=runtime.dtype)
        if not (hasattr(self.model, "get_text_features") and hasattr(self.model, "get_image_features")):
            raise ValueError(f"{type(self.model).__name__} does not embed both texts and images (a CLIP-style model "
                             "with get_text_features and get_image_features is needed)")
        self.image_processor = transformers.AutoImageProcessor.from_pretrained(str(path))
        self.model.to(runtime.device).eval()
        config = self.model.config
        text, vision = config.text_config, config.vision_config
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        limits = [int(text.max_position_embeddings)]
        tokenizer_max = getattr(self.tokenizer, "model_max_length", None)
        if tokenizer_max and tokenizer_max < _SANE_MAX_LENGTH:
            limits.append(int(tokenizer_max))
        self.max_length = min(limits)
        self.patches = (int(vision.image_size) // int(vision.patch_size)) ** 2 + 1
        self.dimensions = int(getattr(config, "projection_dim", 0) or text.hidden_size)
        self._tokenizer_lock = threading.Lock()
        self._text_tower: Any = _TextTower(self.model)
        self._vision_tower: Any = _VisionTower(self.model)

    # ---- caller's side -------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str]) -> list[Encoded]:
        with self._tokenizer_lock:
            full = self.tokenizer(list(texts), truncation=True, max_length=self.max_length, verbose=False)
        return [Encoded(ids) for ids in full["input_ids"]]

    def encode_images(self, uris: Sequence[tuple[str, str]]) -> list[ImageItem]:
        """(data URI, where it was in the request) pairs as images for the vision tower."""
        from PIL import Image, UnidentifiedImageError

        images = []
        for uri, where in uris:
            data = decode_data_uri(uri, where).data
            try:
                with warnings.catch_warnings():
                    # A few compressed bytes can stand for gigabytes of pixels: past Pillow's
                    # bound (about 89 megapixels) an image is refused, not decoded.
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    with Image.open(io.BytesIO(data)) as opened:
                        images.append(opened.convert("RGB"))
            except (Image.DecompressionBombWarning, Image.DecompressionBombError):
                raise ElasticsearchError(400, "illegal_argument_exception",
                                         f"{where} has more pixels than {Image.MAX_IMAGE_PIXELS}") from None
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
                raise ElasticsearchError(400, "illegal_argument_exception",
                                         f"{where} is not an image this model can read") from None
        if not images:
            return []
        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        return [ImageItem(row, self.patches) for row in pixels]

    def encode_contents(self, contents: Sequence[Sequence[ContentItem]]) -> list[Encoded | ImageItem]:
        """Every item of every group, in order, ready for ``run``."""
        flat = [(g, i, item) for g, group in enumerate(contents) for i, item in enumerate(group)]
        texts = [(n, item.value) for n, (_, _, item) in enumerate(flat) if item.type != IMAGE]
        images = [(n, (item.value, f"The [image] input at $.input[{g}]" + (f".content[{i}]" if len(contents[g]) > 1
                                                                                   else "")))
                  for n, (g, i, item) in enumerate(flat) if item.type == IMAGE]
        out: list[Any] = [None] * len(flat)
        for (n, _), encoded in zip(texts, self.encode_texts([text for _, text in texts]) if texts else []):
            out[n] = encoded
        for (n, _), image in zip(images, self.encode_images([pair for _, pair in images])):
            out[n] = image
        return out

    @staticmethod
    def combine(contents: Sequence[Sequence[ContentItem]], vectors: Sequence[list[float]]) -> list[list[float]]:
        """One vector per group: its item's, or the normalised mean of its items'."""
        out, at = [], 0
        for group in contents:
            if len(group) == 1:
                out.append(vectors[at])
            else:
                mean = torch.tensor(vectors[at:at + len(group)], dtype=torch.float32).mean(dim=0)
                out.append(F.normalize(mean, dim=0).tolist())
            at += len(group)
        return out

    # ---- worker's side -------------------------------------------------------------
    def run(self, items: Sequence[Encoded | ImageItem]) -> list[list[float]]:
        out: list[Any] = [None] * len(items)
        texts = [n for n, item in enumerate(items) if isinstance(item, Encoded)]
        images = [n for n, item in enumerate(items) if isinstance(item, ImageItem)]
        with torch.inference_mode():
            if texts:
                for n, vector in zip(texts, self._text_vectors([items[n] for n in texts])):  # type: ignore[misc]
                    out[n] = vector
            if images:
                for n, vector in zip(images, self._image_vectors([items[n] for n in images])):  # type: ignore[misc]
                    out[n] = vector
        return out

    def _text_vectors(self, items: list[Encoded]) -> list[list[float]]:
        width = max(len(item) for item in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, item in enumerate(items):
            ids[row, :len(item)] = torch.tensor(item.input_ids, dtype=torch.long)
            mask[row, :len(item)] = 1
        device = self.runtime.device
        features = self._text_tower(ids.to(device), mask.to(device))
        return F.normalize(features.float(), dim=-1).cpu().tolist()

    def _image_vectors(self, items: list[ImageItem]) -> list[list[float]]:
        pixels = torch.stack([item.pixels for item in items]).to(self.runtime.device, self.runtime.dtype)
        return F.normalize(self._vision_tower(pixels).float(), dim=-1).cpu().tolist()

    # ---- ONNX Runtime on CPU ---------------------------------------------------------
    def check_items(self) -> list[Encoded | ImageItem]:
        """The check sentences, and images of a few sizes, colours and patterns."""
        from PIL import Image

        pictures = [Image.new("RGB", size, colour) for size, colour in
                    (((32, 32), (200, 30, 30)), ((50, 20), (20, 160, 240)), ((7, 41), (250, 250, 250)))]
        gradient = Image.new("RGB", (40, 40))
        gradient.putdata([(x * 6, y * 6, (x + y) * 3) for y in range(40) for x in range(40)])
        pixels = self.image_processor(images=[*pictures, gradient], return_tensors="pt")["pixel_values"]
        return [*self.encode_texts(CHECK_SENTENCES), *(ImageItem(row, self.patches) for row in pixels)]

    def use_onnx(self, threads: int, cache_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
        """Serve both towers with ONNX Runtime if their exports agree with torch; what runs the model."""
        from .engine import FP32_MIN_COSINE
        from .exported import EXPORT_FORMAT, cache_root, model_key
        from .onnx_runtime import publish_export

        items = self.check_items()
        reference = self.run(items)
        name, revision = model_key(self.path)
        entry = cache_root(cache_dir) / name / revision / f"{EXPORT_NAME}-v{EXPORT_FORMAT}" / "fp32"
        torch_towers = self._text_tower, self._vision_tower
        try:
            text = publish_export(self._export_text, entry / "text")
            vision = publish_export(self._export_vision, entry / "vision")
            self._text_tower, self._vision_tower = _OnnxTower(text, threads), _OnnxTower(vision, threads)
            candidate = self.run(items)
        except Exception as exc:  # noqa: BLE001 - a tower the exporter cannot trace: torch still serves it
            self._text_tower, self._vision_tower = torch_towers
            log.warning("model [%s]: ONNX export failed (%s: %s); serving with torch", name, type(exc).__name__, exc)
            return {"engine": "torch", "quantization": "none"}
        agreement = sum(_cosine(a, b) for a, b in zip(reference, candidate)) / len(items)
        if agreement < FP32_MIN_COSINE:
            self._text_tower, self._vision_tower = torch_towers
            log.warning("model [%s]: ONNX Runtime agrees with torch to a mean cosine of %.6f, below %s; "
                        "serving with torch", name, agreement, FP32_MIN_COSINE)
            return {"engine": "torch", "quantization": "none"}
        log.info("model [%s]: ONNX Runtime fp32, mean cosine %.6f to torch on %d check inputs",
                 name, agreement, len(items))
        return {"engine": "onnx", "quantization": "none", "cosine": agreement}

    def _export_text(self, folder: Path) -> None:
        example = self.encode_texts(["an example sentence to trace", "a second one"])
        width = max(len(e) for e in example)
        ids = torch.tensor([e.input_ids + [self.pad_id] * (width - len(e)) for e in example])
        mask = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in example])
        names = ["input_ids", "attention_mask"]
        torch.onnx.export(_TextTower(self.model).eval(), (ids, mask), str(folder / "model.onnx"), dynamo=False,
                          opset_version=TORCHSCRIPT_OPSET, input_names=names, output_names=["output"],
                          dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names})

    def _export_vision(self, folder: Path) -> None:
        pixels = torch.stack([item.pixels for item in self.check_items() if isinstance(item, ImageItem)][:2])
        torch.onnx.export(_VisionTower(self.model).eval(), (pixels,), str(folder / "model.onnx"), dynamo=False,
                          opset_version=TORCHSCRIPT_OPSET, input_names=["pixel_values"], output_names=["output"],
                          dynamic_axes={"pixel_values": {0: "batch"}})

    def warmup_items(self) -> list[Encoded | ImageItem]:
        from PIL import Image

        pixels = self.image_processor(images=[Image.new("RGB", (32, 32), (127, 127, 127))],
                                      return_tensors="pt")["pixel_values"]
        return [*self.encode_texts(["warm-up"]), ImageItem(pixels[0], self.patches)]

    def close(self) -> None:
        """Nothing beyond the weights to let go of."""

    def describe(self) -> dict[str, Any]:
        return {"dimensions": self.dimensions}
