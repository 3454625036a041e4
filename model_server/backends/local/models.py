"""Where a local model's files come from: a built-in id, a Hugging Face id or a path.

``kubeinfer.model_ids`` resolves the endpoint's ``model_id`` (aliases, built-in ids) to a
name; here that name becomes a folder:

1. a directory that exists: an absolute path, a mounted volume, or a path relative to
   the current directory;
2. the copy an installed Python package carries (``model_ids.PACKAGED_MODELS``);
3. otherwise a Hugging Face Hub id: first looked up in Hugging Face's own cache
   (``HF_HOME``, where the operator's init container downloads it), then downloaded
   into ``cache_dir``; ``HF_HUB_OFFLINE=1`` restricts this to what is cached already.

This module does not import torch.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from kubeinfer.errors import ElasticsearchError
from kubeinfer.model_ids import is_local_path, packaged_model_dir

# Files a model server needs; skips other frameworks' weights (TF, Flax, ONNX, OpenVINO).
_ALLOW_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "tokenizer*", "*/config.json",
                   "*/model.safetensors", "*/pytorch_model.bin", "*.py"]
_E5 = re.compile(r"(?:^|[/_.-])e5(?:[-_.]|$)", re.IGNORECASE)


def is_e5(model_id: str, resolved: str) -> bool:
    """E5 models are trained with ``query: `` / ``passage: `` prefixes."""
    return bool(_E5.search(model_id) or _E5.search(resolved))


def model_not_found(model_id: str, why: str) -> ElasticsearchError:
    return ElasticsearchError(404, "resource_not_found_exception", f"Could not find trained model [{model_id}]: {why}")


def cached_model_dir(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder holding ``name``'s files if they are here already (a directory, a
    package's copy, Hugging Face's cache or ``cache_dir``), downloading nothing; else None."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    packaged = packaged_model_dir(name)
    if packaged is not None or is_local_path(name):
        return packaged
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # an image without the model server's libraries serves no local model
        return None
    for where in ([{"cache_dir": cache_dir}] if cache_dir is not None else []) + [{}]:
        try:
            return Path(snapshot_download(repo_id=name, local_files_only=True, **where))
        except Exception:  # noqa: BLE001 - not cached, whatever the reason
            continue
    return None


def downloads_forbidden() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def locate_model(model_id: str, name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """A local directory holding the files of ``name`` (what ``model_id`` resolved to),
    downloading them when needed."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.is_absolute() or is_local_path(name) or name.startswith(".") or name.count("/") > 1:
        raise model_not_found(model_id, f"no model directory at [{name}]")
    packaged = packaged_model_dir(name)
    if packaged is not None:
        return packaged
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
        # Offline by choice, or no network: either way, say how to get the files there.
        command = f"hf download {name}" + (f" --cache-dir {cache_dir}" if cache_dir is not None else "")
        hint = f"pre-fill the cache with `{command}`"
        if downloads_forbidden():
            reason = f"[{name}] is not in the model cache and HF_HUB_OFFLINE forbids downloads; {hint}"
        else:
            reason = f"[{name}] is not in the model cache and the Hugging Face Hub cannot be reached; {hint}"
        raise model_not_found(model_id, reason) from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise model_not_found(model_id, f"could not download [{name}]: {type(exc).__name__}") from None
