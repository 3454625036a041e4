"""Where and how a local model runs: device, precision, attention kernel and threads.

On a CUDA GPU: bfloat16 where the GPU supports it, float16 otherwise, PyTorch's
scaled-dot-product attention, and CUDA graphs of the forward pass unless turned off
(``KUBEINFER_CUDA_GRAPHS=false``; see ``cuda_graphs``). On CPU: float32 with ``num_threads`` intra-op threads
(Elasticsearch's ``num_threads``: threads buy latency, allocations buy throughput).
``KUBEINFER_CPU_DTYPE=bfloat16`` (``ServerSettings.cpu_dtype``) trades exactness for speed on CPUs with bfloat16
instructions (AVX512-BF16, AMX): about twice the throughput, vectors within ~1e-3.
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
    cuda_graphs: bool = False

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"


def select_runtime(num_threads: int = 1, device: str | None = None, cpu_dtype: str = "float32",
                   cuda_graphs: bool = True) -> Runtime:
    """The runtime for this machine; ``device`` forces ``cpu`` or ``cuda``.

    Tokenizing happens on the event loop, one request at a time: a pool of tokenizer
    threads would only compete with the model's threads for the same cores, so the Hugging
    Face tokenizers are told not to start one (unless the process says otherwise).
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    wanted = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if wanted.startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return Runtime(torch.device(wanted), dtype, cuda_graphs=cuda_graphs)
    torch.set_num_threads(max(1, int(num_threads)))
    dtype = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16}.get(cpu_dtype.lower(), torch.float32)
    return Runtime(torch.device("cpu"), dtype)
