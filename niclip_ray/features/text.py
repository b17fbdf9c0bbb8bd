"""LLM text embeddings: windowed, attention-masked mean of the last hidden state.

The reference (``docs/method.md``, "Text embedding") tokenizes a document without truncation (so
only the first window carries the BOS token), cuts the ids into consecutive
``max_length``-token windows, runs each window, and averages the last hidden state over
*all* tokens of *all* windows (a token-weighted mean, no per-window normalisation).

:class:`TextEmbedder` computes the same vector faster: windows of many documents are
sorted by length and batched with right padding, the forward pass runs under
``torch.inference_mode`` on the backbone only (no LM head, no stack of hidden states), and
each window is reduced on the device to its masked sum and token count. Only those sums
leave the model; a document's vector is the sum of its windows' sums divided by its token
count. Bad texts get a per-text error and never stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from niclip_ray.defaults import MAX_TOKENS
from niclip_ray.errors import ParameterError
from niclip_ray.features.text_models import LoadedModel, ModelSpec, load_model, resolve_model

log = logging.getLogger(__name__)

#: Default cap on tokens per text; a longer text is an error, not hours of compute.
DEFAULT_MAX_TOKENS = MAX_TOKENS
#: Characters allowed per allowed token before tokenizing at all (guards against
#: pathological multi-megabyte strings).
CHARS_PER_TOKEN_GUARD = 64


class TextError(ValueError):
    """A text that cannot be embedded (empty, not valid Unicode, too long)."""


def coerce_text(value: object) -> str:
    """Return ``value`` as a clean ``str`` or raise :class:`TextError` saying what is wrong.

    ``bytes`` must be valid UTF-8; ``str`` must encode to UTF-8 (no lone surrogates, as
    left by ``errors="surrogateescape"`` decoding); the text must not be blank.
    """
    if value is None or (not isinstance(value, (str, bytes, bytearray, memoryview)) and pd.isna(value) is True):
        raise TextError("missing text")
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TextError(f"text is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    if not isinstance(value, str):
        raise TextError(f"text must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TextError(f"text is not valid Unicode (lone surrogate at character {exc.start})") from None
    if not value.strip():
        raise TextError("empty text" if not value else "whitespace-only text")
    return value


def split_windows(ids: Sequence[int], max_length: int) -> list[list[int]]:
    """Cut token ids into consecutive, non-overlapping windows of at most ``max_length``."""
    ids = list(ids)
    return [ids[i : i + max_length] for i in range(0, len(ids), max_length)]


@dataclass
class EmbeddingResult:
    """Pooled vectors of a list of texts.

    Attributes
    ----------
    vectors : (n_texts, dim) float32
        Mean last hidden state per text; rows of failed texts are NaN.
    n_tokens : (n_texts,) int64
        Tokens of each text (special tokens included); 0 for failed texts.
    errors : list of str
        Empty string for a text that was embedded, else the reason it was not.
    """

    vectors: np.ndarray
    n_tokens: np.ndarray
    errors: list[str]

    @property
    def ok(self) -> np.ndarray:
        """(n_texts,) bool: True where the text was embedded."""
        return np.array([not e for e in self.errors], dtype=bool)


class TextEmbedder:
    """Embed texts with a transformers model, the way the reference pools them.

    Parameters
    ----------
    model : str, ModelSpec or LoadedModel
        A model reference (see :func:`~niclip_ray.features.text_models.resolve_model`),
        a resolved spec, or an already loaded model.
    max_length : int, optional
        Tokens per window (default: the preset's, else the model's positions).
    batch_size : int
        Windows per forward pass.
    dtype : {"auto", "float32", "bfloat16", "float16"}
        Weights and activations; ``auto`` is bfloat16 on a GPU, float32 on a CPU. Pooling
        always accumulates in float32/float64.
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:1``...
    max_tokens : int
        Texts with more tokens are reported as errors instead of embedded.
    base_model : str, optional
        Base model of an adapter (see ``resolve_model``).
    """

    def __init__(
        self,
        model: str | ModelSpec | LoadedModel,
        *,
        max_length: int | None = None,
        batch_size: int = 8,
        dtype: str = "auto",
        device: str = "auto",
        max_tokens: int = DEFAULT_MAX_TOKENS,
        base_model: str | None = None,
    ):
        for param, value in (("batch_size", batch_size), ("max_tokens", max_tokens)):
            if value < 1:
                raise ParameterError(param, f"must be at least 1, got {value}")
        if isinstance(model, LoadedModel):
            self.loaded = model
        else:
            if isinstance(model, ModelSpec):
                spec = replace(model, max_length=max_length or model.max_length)
            else:
                spec = resolve_model(model, base_model=base_model, max_length=max_length)
            self.loaded = load_model(spec, dtype=dtype, device=device)
        self.max_length = int(max_length or self.loaded.info.max_length)
        self.batch_size = int(batch_size)
        self.max_tokens = int(max_tokens)
        tok = self.loaded.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0

    @property
    def dim(self) -> int:
        """Embedding dimension (the model's hidden size)."""
        return self.loaded.info.dim

    @property
    def model_id(self) -> str:
        """The label recorded with the embeddings."""
        return self.loaded.spec.model_id

    def tokenize(self, text: object) -> list[int]:
        """Token ids of one whole text, special tokens included, never truncated.

        Raises
        ------
        TextError
            Bad text, a tokenizer failure, or more than ``max_tokens`` tokens.
        """
        text = coerce_text(text)
        if len(text) > CHARS_PER_TOKEN_GUARD * self.max_tokens:
            raise TextError(
                f"text too long: {len(text):,} characters (limit {CHARS_PER_TOKEN_GUARD * self.max_tokens:,} "
                f"for max_tokens={self.max_tokens:,})"
            )
        try:
            ids = self.loaded.tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        except Exception as exc:  # tokenizers raise assorted types on odd input
            raise TextError(f"tokenizer failed: {type(exc).__name__}: {exc}") from None
        if not ids:
            raise TextError("the tokenizer produced no tokens")
        if len(ids) > self.max_tokens:
            raise TextError(f"text too long: {len(ids):,} tokens > max_tokens={self.max_tokens:,}")
        return list(ids)

    def embed(self, texts: Sequence[object], on_done: Callable[[int], None] | None = None) -> EmbeddingResult:
        """Embed each text: (n, dim) float32 vectors, token counts and per-text errors.

        ``on_done(k)`` is called as ``k`` more texts are finished (all their windows
        embedded, or failed), for progress.
        """
        on_done = on_done or (lambda k: None)
        n = len(texts)
        errors = [""] * n
        n_tokens = np.zeros(n, dtype=np.int64)
        windows: list[tuple[int, list[int]]] = []
        for i, text in enumerate(texts):
            try:
                ids = self.tokenize(text)
            except TextError as exc:
                errors[i] = str(exc)
                continue
            n_tokens[i] = len(ids)
            windows.extend((i, w) for w in split_windows(ids, self.max_length))
        left = np.bincount([owner for owner, _ in windows], minlength=n)
        on_done(int((left == 0).sum()))  # texts that failed to tokenize
        sums = np.zeros((n, self.dim), dtype=np.float64)
        for owners, window_sums, message in self._run_windows(windows):
            for owner, row in zip(owners, window_sums):
                if message:
                    errors[owner] = errors[owner] or message
                else:
                    sums[owner] += row
                left[owner] -= 1
            on_done(int(sum(left[owner] == 0 for owner in set(owners))))
        vectors = np.full((n, self.dim), np.nan, dtype=np.float32)
        for i in range(n):
            if not errors[i]:
                vectors[i] = sums[i] / n_tokens[i]
            else:
                n_tokens[i] = 0
        return EmbeddingResult(vectors, n_tokens, errors)

    def _run_windows(self, windows: list[tuple[int, list[int]]]):
        """Yield ``(owners, window_sums, error)`` per batch of length-sorted windows.

        A batch that fails (e.g. out of memory) is retried one window at a time, so one
        bad window only fails its own text.
        """
        order = sorted(range(len(windows)), key=lambda k: len(windows[k][1]), reverse=True)
        for start in range(0, len(order), self.batch_size):
            batch = [windows[k] for k in order[start : start + self.batch_size]]
            try:
                yield [o for o, _ in batch], self._window_sums([w for _, w in batch]), ""
            except Exception as exc:
                if len(batch) == 1:
                    yield [batch[0][0]], [None], f"model forward failed: {type(exc).__name__}: {exc}"
                    continue
                log.warning("batch of %d windows failed (%s); retrying one by one", len(batch), exc)
                self._free_memory()
                for owner, window in batch:
                    try:
                        yield [owner], self._window_sums([window]), ""
                    except Exception as single:
                        yield [owner], [None], f"model forward failed: {type(single).__name__}: {single}"

    def _window_sums(self, windows: list[list[int]]) -> np.ndarray:
        """(n_windows, dim) float64: sum of the last hidden state over each window's tokens."""
        import torch

        length = max(len(w) for w in windows)
        ids = torch.full((len(windows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(windows), length), dtype=torch.long)
        for row, window in enumerate(windows):
            ids[row, : len(window)] = torch.tensor(window, dtype=torch.long)
            mask[row, : len(window)] = 1
        device = self.loaded.device
        padded = any(len(w) < length for w in windows)
        with torch.inference_mode():
            # Without padding no mask is passed, so attention can take its fused causal kernels
            # instead of materialising a (batch, heads, length, length) mask.
            attention = mask.to(device) if padded else None
            hidden = self.loaded.model(input_ids=ids.to(device), attention_mask=attention).last_hidden_state
            keep = mask.to(device).unsqueeze(-1).bool()
            sums = hidden.float().masked_fill(~keep, 0.0).sum(dim=1)
        return sums.cpu().double().numpy()

    def _free_memory(self) -> None:
        if self.loaded.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
