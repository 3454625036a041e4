"""Which engine runs a local model on CPU, and at what precision: the serving knobs.

- ``KUBEINFER_RUNTIME``: ``auto`` (ONNX Runtime on CPU when it matches torch, torch on a
  GPU), ``torch``, or ``onnx`` (ONNX Runtime on CPU; a GPU still runs torch).
- ``KUBEINFER_QUANTIZATION``: ``none`` or ``int8`` (dynamic, per-channel weights; ONNX
  Runtime only, opt-in because it changes the numbers).
- ``KUBEINFER_INT8_MIN_COSINE``: the least mean cosine to fp32 that int8 may show on the
  check sentences before the server refuses to serve it (``0.99``).

A bad value fails the server at start-up, before any model loads. This module imports
neither torch nor ONNX Runtime.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from kubeinfer.errors import ElasticsearchError

ENGINES = ("auto", "torch", "onnx")
QUANTIZATIONS = ("none", "int8")
# fp32 ONNX must agree with torch to this mean cosine to become the default.
FP32_MIN_COSINE = 0.9999
DEFAULT_INT8_MIN_COSINE = 0.99


def _invalid(reason: str) -> ElasticsearchError:
    return ElasticsearchError(400, "illegal_argument_exception", reason)


@dataclass(frozen=True)
class EngineOptions:
    engine: Literal["auto", "torch", "onnx"] = "auto"
    quantization: Literal["none", "int8"] = "none"
    int8_min_cosine: float = DEFAULT_INT8_MIN_COSINE

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise _invalid(f"KUBEINFER_RUNTIME must be one of {list(ENGINES)}, not [{self.engine}]")
        if self.quantization not in QUANTIZATIONS:
            raise _invalid(f"KUBEINFER_QUANTIZATION must be one of {list(QUANTIZATIONS)}, not [{self.quantization}]")
        if self.engine == "torch" and self.quantization != "none":
            raise _invalid("KUBEINFER_QUANTIZATION=int8 needs KUBEINFER_RUNTIME auto or onnx, not torch")
        if not 0.0 < self.int8_min_cosine <= 1.0:
            raise _invalid(f"KUBEINFER_INT8_MIN_COSINE must be in (0, 1], not [{self.int8_min_cosine}]")

    @property
    def wants_onnx(self) -> bool:
        return self.engine != "torch"

    @classmethod
    def resolve(cls, options: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> "EngineOptions":
        """Explicit options over environment variables over the defaults."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if environ.get("KUBEINFER_RUNTIME"):
            values["engine"] = environ["KUBEINFER_RUNTIME"].strip().lower()
        if environ.get("KUBEINFER_QUANTIZATION"):
            values["quantization"] = environ["KUBEINFER_QUANTIZATION"].strip().lower()
        if environ.get("KUBEINFER_INT8_MIN_COSINE"):
            try:
                values["int8_min_cosine"] = float(environ["KUBEINFER_INT8_MIN_COSINE"])
            except ValueError:
                raise _invalid(f"KUBEINFER_INT8_MIN_COSINE must be a number, not "
                               f"[{environ['KUBEINFER_INT8_MIN_COSINE']}]") from None
        values.update({k: v for k, v in (options or {}).items() if v is not None})
        return cls(**values)
