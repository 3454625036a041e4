"""Models run in-process with torch and transformers: the backend of the ``elasticsearch``
and ``elser`` services. Importing this package does not import torch; loading a model does."""

from __future__ import annotations

import os
from typing import Any

from kubeinfer.catalog import InferenceEndpointConfig
from ..base import Backend


def create_backend(
    config: InferenceEndpointConfig, cache_dir: str | os.PathLike[str] | None = None, **options: Any
) -> Backend:
    """The catalog's factory for local models. Options: ``device`` (``cpu``/``cuda``),
    ``batching`` (``max_batch_size``, ``max_batch_tokens``, ``max_wait``, ``queue_capacity``)
    ``settings`` (a ``ServerSettings``; read from the environment when not given) and ``engine``
    (``engine``, ``quantization``, ``int8_min_cosine``: over the settings' runtime knobs)."""
    from .backend import LocalModelBackend

    return LocalModelBackend(
        config, cache_dir=cache_dir, device=options.get("device"), batching=options.get("batching"),
        settings=options.get("settings"), engine=options.get("engine"),
    )
