"""Text features stage: one section of every study -> pooled LLM embedding, on Ray actors.

Output ``features/text/part-NNNNN.parquet`` (one row per study of ``studies.parquet``):

``study_id``  string
``section``   ``abstract``, ``body``, ``title``, ``keywords`` or ``title+keywords``
              (:mod:`niclip_ray.corpus.sections`)
``embedding`` ``arrow.fixed_shape_tensor[float, [D]]``, raw mean last hidden state; null when failed
``n_tokens``  tokens of the text (special tokens included); 0 when failed
``model_id``  the model label (:class:`~niclip_ray.features.text_models.ModelSpec`)
``error``     empty, or why the study has no embedding (empty text, not UTF-8, too long, ...)

Each actor loads the model once. On a cluster with GPUs there is one actor per GPU
(``num_gpus=1``, bf16 by default); without GPUs, CPU actors with fractional CPUs. The
texts travel inside the shard manifest, so actors never re-read the corpus, and a rerun
recomputes a shard whose texts changed.

Also here: :func:`embed_texts` (a short list of texts, e.g. a vocabulary, embedded in one
Ray task on a GPU when there is one). :func:`niclip_ray.features.text_table.read_text_features`
reads the stage's output as a matrix; :mod:`niclip_ray.pipelines.vocab` builds the
vocabulary with both.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from niclip_ray._docs import fill_doc
from niclip_ray.corpus import load_corpus
from niclip_ray.corpus.sections import COLUMN_SECTIONS, SECTIONS, section_texts
from niclip_ray.defaults import TEXT_BATCH_SIZE, TEXT_SHARD_SIZE
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.features.text import DEFAULT_MAX_TOKENS, EmbeddingResult, TextEmbedder, TextError, coerce_text
from niclip_ray.features.text_models import ModelSpec, inspect_model, resolve_model
from niclip_ray.pipelines.shards import ProcessFn, StageSummary, read_manifest, run_stage
from niclip_ray.pipelines.tally import items_done
from niclip_ray.tables import error_array, tensor_array

STAGE = "text"
DEFAULT_SHARD_SIZE = TEXT_SHARD_SIZE
DEFAULT_BATCH_SIZE = TEXT_BATCH_SIZE


def text_items(corpus_dir: str | Path, section: str) -> list[dict]:
    """One manifest item per study: ``study_id``, its ``text``, and ``input_error`` if unusable."""
    if section not in SECTIONS:
        raise ParameterError("section", f"must be one of {', '.join(SECTIONS)}, got {section!r}")
    studies = load_corpus(corpus_dir).studies
    if section in COLUMN_SECTIONS and section not in studies.columns:
        raise InputError(f"{corpus_dir}: studies.parquet has no {section!r} column")
    items = []
    for sid, value in zip(studies["study_id"], section_texts(studies, section)):
        try:
            items.append({"study_id": str(sid), "text": coerce_text(value), "input_error": ""})
        except TextError as exc:
            reason = str(exc)
            message = {"missing text": f"no {section} text", "empty text": f"no {section} text"}.get(
                reason, reason.replace("text", section, 1)
            )
            items.append({"study_id": str(sid), "text": None, "input_error": message})
    return items


def process_texts(items: list[dict], embedder: TextEmbedder, section: str) -> pa.Table:
    """Pure per-shard function: embed the items' texts.

    Returns
    -------
    pyarrow.Table
        The stage's columns, one row per item, in item order.
    """
    todo = [i for i, item in enumerate(items) if not item.get("input_error")]
    result = embedder.embed([items[i]["text"] for i in todo], on_done=items_done)
    vectors = np.zeros((len(items), embedder.dim), dtype=np.float32)
    n_tokens = np.zeros(len(items), dtype=np.int64)
    errors = [item.get("input_error", "") for item in items]
    for k, i in enumerate(todo):
        errors[i] = result.errors[k]
        if not result.errors[k]:
            vectors[i] = result.vectors[k]
            n_tokens[i] = result.n_tokens[k]
    ok = np.array([not e for e in errors], dtype=bool)
    return pa.table(
        {
            "study_id": pa.array([str(item["study_id"]) for item in items], pa.string()),
            "section": pa.array([section] * len(items), pa.string()),
            "embedding": tensor_array(vectors, valid=ok),
            "n_tokens": pa.array(n_tokens, pa.int64()),
            "model_id": pa.array([embedder.model_id] * len(items), pa.string()),
            "error": error_array(errors),
        }
    )


@dataclass(frozen=True)
class EmbedSettings:
    """How to run the embedder: everything but the model that a run can choose."""

    batch_size: int = DEFAULT_BATCH_SIZE
    dtype: str = "auto"
    max_tokens: int = DEFAULT_MAX_TOKENS
    num_threads: int | None = None

    def build(self, spec: ModelSpec) -> TextEmbedder:
        """Load the model (inside the worker) with these settings."""
        if self.num_threads:
            import torch

            torch.set_num_threads(self.num_threads)
        return TextEmbedder(spec, batch_size=self.batch_size, dtype=self.dtype, max_tokens=self.max_tokens)


def make_process(spec: ModelSpec, settings: EmbedSettings, section: str) -> ProcessFn:
    """Process factory body: load the model once in this actor."""
    return functools.partial(process_texts, embedder=settings.build(spec), section=section)


def stage_params(spec: ModelSpec, max_length: int, section: str, settings: EmbedSettings) -> dict:
    """Parameters recorded in the stage manifest; a resume must match them."""
    return {
        "model_id": spec.model_id,
        "base": spec.base,
        "adapter": spec.adapter,
        "max_length": int(max_length),
        "section": section,
        "dtype": settings.dtype,
        "max_tokens": int(settings.max_tokens),
    }


@dataclass(frozen=True)
class WorkerShape:
    """Actors and their resources for model inference on the current cluster."""

    num_actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    num_threads: int | None


def worker_shape(num_actors: int | None) -> WorkerShape:
    """One actor per GPU when the cluster has GPUs; else CPU actors sharing the CPUs.

    A CPU actor gets ``ceil`` of its (fractional) CPU share as torch threads: Ray would
    otherwise pin it to one thread.
    """
    from niclip_ray.runtime.session import actor_pool_shape, cluster_cpus, cluster_gpus

    gpus = int(cluster_gpus())
    if gpus:
        return WorkerShape(num_actors or gpus, 1.0, 1.0, None)
    n = num_actors or 1
    n, share = actor_pool_shape(n, max(1.0, cluster_cpus() / n))
    return WorkerShape(n, share, 0.0, max(1, math.ceil(share)))


@fill_doc
def run(
    corpus_dir: str | Path,
    out_dir: str | Path,
    *,
    model: str,
    section: str = "body",
    base_model: str | None = None,
    max_length: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dtype: str = "auto",
    max_tokens: int = DEFAULT_MAX_TOKENS,
    num_actors: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    on_items: Callable[[int, int], None] | None = None,
) -> StageSummary:
    """Embed one text section of every study of a corpus on the current Ray.

    Parameters
    ----------
    %(corpus_dir)s
    out_dir : path
        Stage directory (``features/text``); a rerun resumes it.
    model : str
        Preset, packaged model, local path or cached repository id.
    section : {"abstract", "body", "title", "keywords", "title+keywords"}
        Which text of each study (:mod:`niclip_ray.corpus.sections`).
    base_model : str, optional
        Base model of an adapter.
    max_length : int, optional
        Tokens per window (default: the preset's or the model's positions).
    batch_size : int
        Windows per forward pass (per actor).
    dtype : {"auto", "float32", "bfloat16", "float16"}
        ``auto``: bf16 on GPU actors, fp32 on CPU actors.
    max_tokens : int
        Longer texts get an error row.
    num_actors : int, optional
        Actors (default: one per GPU, else one CPU actor).
    %(shard_size)s
    %(on_items)s
    """
    for param, value in (("batch_size", batch_size), ("max_tokens", max_tokens)):
        if value < 1:
            raise ParameterError(param, f"must be at least 1, got {value}")
    items = text_items(corpus_dir, section)
    spec = resolve_model(model, base_model=base_model, max_length=max_length)
    info = inspect_model(spec)  # fails here, not in every actor, when the model is unusable
    shape = worker_shape(num_actors)
    settings = EmbedSettings(batch_size, dtype, max_tokens, shape.num_threads)
    return run_stage(
        STAGE,
        items,
        key="study_id",
        out_dir=out_dir,
        factory=functools.partial(make_process, spec, settings, section),
        params=stage_params(spec, info.max_length, section, settings),
        shard_size=shard_size,
        num_actors=shape.num_actors,
        cpus_per_actor=shape.cpus_per_actor,
        gpus_per_actor=shape.gpus_per_actor,
        on_items=on_items,
    )


def _embed_in_worker(spec: ModelSpec, settings: EmbedSettings, texts: list) -> EmbeddingResult:
    return settings.build(spec).embed(texts)


def embed_texts(
    texts: Sequence[str],
    *,
    model: str,
    base_model: str | None = None,
    max_length: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dtype: str = "auto",
    timeout_s: float | None = None,
) -> tuple[EmbeddingResult, str]:
    """Embed a short list of texts in one Ray task (on a GPU when the cluster has one).

    The task is cancelled and :class:`~niclip_ray.errors.ConfigError` raised after
    ``timeout_s`` (default: the runtime's no-progress timeout).

    Returns
    -------
    (EmbeddingResult, model_id)
    """
    import ray
    from ray.exceptions import GetTimeoutError

    from niclip_ray.errors import ConfigError
    from niclip_ray.runtime.session import NO_PROGRESS_TIMEOUT_S

    spec = resolve_model(model, base_model=base_model, max_length=max_length)
    inspect_model(spec)
    shape = worker_shape(1)
    settings = EmbedSettings(batch_size, dtype, DEFAULT_MAX_TOKENS, shape.num_threads)
    task = ray.remote(_embed_in_worker).options(num_cpus=shape.cpus_per_actor, num_gpus=shape.gpus_per_actor)
    ref = task.remote(spec, settings, list(texts))
    timeout_s = timeout_s or NO_PROGRESS_TIMEOUT_S
    try:
        return ray.get(ref, timeout=timeout_s), spec.model_id
    except GetTimeoutError as exc:
        ray.cancel(ref, force=True)
        raise ConfigError(f"embedding {len(texts)} texts with {spec.model_id} did not finish in {timeout_s:g} s") from exc


def stage_max_length(directory: str | Path) -> int | None:
    """The window size a text stage directory was computed with (from its manifest)."""
    manifest = read_manifest(Path(directory))
    if manifest is None:
        return None
    value = manifest.get("params", {}).get("max_length")
    return int(value) if value else None
