"""Which engine runs a local model on CPU, and at what precision.

``auto`` runs ONNX Runtime on CPU where it matches torch and torch on a GPU; ``onnx``
asks for ONNX Runtime on CPU (a GPU still runs torch); ``torch`` keeps torch. ``int8``
(dynamic, per-channel weights) is ONNX Runtime only and opt-in, since it changes the
numbers; below ``int8_min_cosine`` to fp32 on the check inputs it is refused. The
defaults come from ``kubeinfer.config.ServerSettings`` (``KUBEINFER_RUNTIME``,
``KUBEINFER_QUANTIZATION``, ``KUBEINFER_INT8_MIN_COSINE``), which validates them at
start-up. This module imports neither torch nor ONNX Runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from kubeinfer.config import ServerSettings

# fp32 ONNX must agree with torch to this mean cosine to become the default.
FP32_MIN_COSINE = 0.9999


@dataclass(frozen=True)
class EngineOptions:
    engine: Literal["auto", "torch", "onnx"] = "auto"
    quantization: Literal["none", "int8"] = "none"
    int8_min_cosine: float = 0.99

    @property
    def wants_onnx(self) -> bool:
        return self.engine != "torch"

    @classmethod
    def resolve(cls, settings: ServerSettings, options: Mapping[str, Any] | None = None) -> "EngineOptions":
        """Explicit options over the server's settings."""
        values: dict[str, Any] = {"engine": settings.runtime, "quantization": settings.quantization,
                                  "int8_min_cosine": settings.int8_min_cosine}
        values.update({k: v for k, v in (options or {}).items() if v is not None})
        return cls(**values)
