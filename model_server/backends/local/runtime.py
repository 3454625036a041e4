"""Where and how a local model runs: device, precision, attention kernel and threads.

On a CUDA GPU: bfloat16 where the GPU supports it, float16 otherwise, and PyTorch's
scaled-dot-product attention. On CPU: float32 with ``num_threads`` intra-op threads
(Elasticsearch's ``num_threads``: threads buy latency, allocations buy throughput).
Imports torch: only the local backend's loading path imports this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype
    attention: str = "sdpa"

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"


def select_runtime(num_threads: int = 1, device: str | None = None) -> Runtime:
    """The runtime for this machine; ``device`` (or ``KUBEINFER_DEVICE``) forces ``cpu`` or ``cuda``."""
    wanted = device or os.environ.get("KUBEINFER_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    if wanted.startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return Runtime(torch.device(wanted), dtype)
    torch.set_num_threads(max(1, int(num_threads)))
    return Runtime(torch.device("cpu"), torch.float32)
