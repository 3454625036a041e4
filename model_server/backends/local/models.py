"""Where a local model's files come from: a built-in id, a Hugging Face id or a path.

``model_id`` resolves in this order:

1. Aliases: ``KUBEINFER_MODEL_ALIASES`` (a JSON object, which the operator sets on
   the pod from its own settings), then one variable per built-in id named by
   ``builtin_model_env`` (``KUBEINFER_BUILTIN_MODEL_ELSER_MODEL_2=/models/my-splade``),
   then ``catalog.BUILTIN_MODELS``: Elasticsearch's built-in ids
   (``.multilingual-e5-small``, ``.elser_model_2``, ``.rerank-v1``) map to open models,
   and a deployment can pick another, e.g. a SPLADE model of its choice for ELSER,
   whose weights are not public.
2. A directory that exists: an absolute path, a mounted volume, or a path relative to
   the current directory.
3. Otherwise a Hugging Face Hub id: first looked up in Hugging Face's own cache
   (``HF_HOME``, where the operator's init container downloads it), then downloaded
   into ``cache_dir``; ``HF_HUB_OFFLINE=1`` restricts this to what is cached already.

This module does not import torch.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from kubeinfer.catalog import BUILTIN_MODELS
from kubeinfer.errors import ElasticsearchError

_ENV_PREFIX = "KUBEINFER_BUILTIN_MODEL_"
# Files a model server needs; skips other frameworks' weights (TF, Flax, ONNX, OpenVINO).
_ALLOW_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "tokenizer*", "*/config.json",
                   "*/model.safetensors", "*/pytorch_model.bin", "*.py"]
_E5 = re.compile(r"(?:^|[/_.-])e5(?:[-_.]|$)", re.IGNORECASE)


def builtin_model_env(model_id: str) -> str:
    """The variable that replaces a built-in model: ``.elser_model_2`` -> ``KUBEINFER_BUILTIN_MODEL_ELSER_MODEL_2``."""
    return _ENV_PREFIX + re.sub(r"[^A-Za-z0-9]+", "_", model_id).strip("_").upper()


def _aliases() -> dict[str, str]:
    raw = os.environ.get("KUBEINFER_MODEL_ALIASES")
    if not raw:
        return {}
    try:
        aliases = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in aliases.items() if v} if isinstance(aliases, dict) else {}


def resolve_model_name(model_id: str) -> str:
    """The Hugging Face id or path that serves ``model_id``."""
    aliased = _aliases().get(model_id)
    if aliased:
        return aliased
    if model_id in BUILTIN_MODELS:
        return os.environ.get(builtin_model_env(model_id)) or BUILTIN_MODELS[model_id]
    return model_id


def is_e5(model_id: str, resolved: str) -> bool:
    """E5 models are trained with ``query: `` / ``passage: `` prefixes."""
    return bool(_E5.search(model_id) or _E5.search(resolved))


def model_not_found(model_id: str, why: str) -> ElasticsearchError:
    return ElasticsearchError(404, "resource_not_found_exception", f"Could not find trained model [{model_id}]: {why}")


def locate_model(model_id: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """A local directory holding the model's files, downloading them when needed."""
    name = resolve_model_name(model_id)
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise model_not_found(model_id, f"no model directory at [{name}]")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if cache_dir is not None:
        try:  # already in Hugging Face's own cache, e.g. downloaded there by an init container
            return Path(snapshot_download(repo_id=name, local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError):
            pass
    try:
        return Path(snapshot_download(repo_id=name, cache_dir=cache_dir, allow_patterns=_ALLOW_PATTERNS))
    except LocalEntryNotFoundError:
        raise model_not_found(model_id, f"[{name}] is not in the model cache and downloads are disabled") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise model_not_found(model_id, f"could not download [{name}]: {type(exc).__name__}") from None
