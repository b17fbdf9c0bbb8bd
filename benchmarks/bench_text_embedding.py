"""Time niclip-ray's text embedder against the reference approach on the same model and texts.

Reference (``braindec/embedding.py`` as described in docs/method.md, "Text embedding"): one document
at a time, the causal LM *with* its head (``AutoModelForCausalLM``, vocabulary logits
computed), ``output_hidden_states=True`` (every layer kept), float32, no padding; the
document vector is the mean of ``hidden_states[-1]`` over the tokens of all its windows.

niclip-ray (:class:`niclip_ray.features.text.TextEmbedder`): windows of many documents
sorted by length and batched, backbone only (no logits, last layer only), masked sums
reduced on the device under ``inference_mode``.

Each approach runs in its own subprocess (so peak memory is its own): the model is loaded,
one warm-up document is embedded, then all texts are embedded while a thread samples the
process RSS. The script prints tokens per wall-clock second and per CPU-second (the latter
is less sensitive to other load on a shared machine), the peak RSS above the loaded model,
the ratios, and the largest difference between the two sets of vectors (they must agree).

Usage: python benchmarks/bench_text_embedding.py [--model smollm2-135m] [--n-texts 64]
       [--max-length 512] [--batch-size 8] [--dtype float32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np


def load_abstracts(n: int) -> list[str]:
    """The first ``n`` abstracts of NiMARE's shipped n-back/flanker studyset."""
    from pathlib import Path

    import pandas as pd
    from nimare.utils import get_resource_path

    studies = pd.read_parquet(Path(get_resource_path()) / "nback_vs_flanker_studyset_2026-07" / "studies.parquet")
    texts = [t for t in studies.sort_values("study_id")["description"] if isinstance(t, str) and t.strip()]
    return texts[:n]


class PeakRSS:
    """Sample this process's RSS every 5 ms in a thread; ``peak`` is the maximum seen."""

    def __init__(self):
        import psutil

        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def reference_embed(lm, tokenizer, texts: list[str], max_length: int, device: str) -> np.ndarray:
    """The reference's loop: batch size 1, LM head, all hidden states."""
    import torch

    out = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        states = []
        for start in range(0, len(ids), max_length):
            window = torch.tensor([ids[start : start + max_length]], device=device)
            with torch.no_grad():
                outputs = lm(input_ids=window, attention_mask=torch.ones_like(window), output_hidden_states=True)
            states.append(outputs.hidden_states[-1][0].float())
        out.append(torch.cat(states).mean(dim=0).cpu().numpy())
    return np.stack(out)


def worker(args) -> dict:
    """Run one approach in this process and return its measurements."""
    import torch

    from niclip_ray.features.text import TextEmbedder
    from niclip_ray.features.text_models import locate, resolve_model

    torch.set_num_threads(args.threads)
    texts = load_abstracts(args.n_texts)
    spec = resolve_model(args.model, max_length=args.max_length)
    started = time.perf_counter()
    if args.method == "ours":
        embedder = TextEmbedder(spec, batch_size=args.batch_size, dtype=args.dtype, device=args.device)
        tokenizer = embedder.loaded.tokenizer

        def run(batch):
            return embedder.embed(batch).vectors
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        files = locate(spec.base)
        tokenizer = AutoTokenizer.from_pretrained(files.directory, local_files_only=True, **files.kwargs())
        lm = AutoModelForCausalLM.from_pretrained(
            files.directory, dtype=getattr(torch, args.dtype), local_files_only=True, **files.kwargs()
        ).to(args.device).eval()

        def run(batch):
            return reference_embed(lm, tokenizer, batch, args.max_length, args.device)
    load_s = time.perf_counter() - started
    run(texts[:1])  # warm-up
    import psutil

    base_rss = psutil.Process().memory_info().rss
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated()
    with PeakRSS() as peak:
        started, cpu_started = time.perf_counter(), time.process_time()
        vectors = run(texts)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    n_tokens = sum(len(tokenizer(t, add_special_tokens=True)["input_ids"]) for t in texts)
    result = {
        "method": args.method,
        "load_s": load_s,
        "seconds": seconds,
        "n_texts": len(texts),
        "n_tokens": n_tokens,
        "tokens_per_s": n_tokens / seconds,
        "tokens_per_cpu_s": n_tokens / cpu_seconds,
        "peak_rss_above_model_mb": (peak.peak - base_rss) / 2**20,
    }
    if args.device.startswith("cuda"):
        result["peak_gpu_above_model_mb"] = (torch.cuda.max_memory_allocated() - base_gpu) / 2**20
    np.save(args.vectors, vectors)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n-texts", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", default="float32", help="ours and the reference (float32 is the reference's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--method", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--vectors", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.method:
        print(json.dumps(worker(args)))
        return
    results, vectors = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("reference", "ours"):
            path = os.path.join(tmp, f"{method}.npy")
            argv = [sys.executable, __file__, "--method", method, "--vectors", path]
            for name in ("model", "n_texts", "max_length", "batch_size", "dtype", "device", "threads"):
                argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
            done = subprocess.run(argv, check=True, capture_output=True, text=True)
            results[method] = json.loads(done.stdout.strip().splitlines()[-1])
            vectors[method] = np.load(path)
    ref, ours = results["reference"], results["ours"]
    for r in (ref, ours):
        print(
            f"{r['method']:>9}: {r['n_texts']} texts, {r['n_tokens']} tokens in {r['seconds']:.2f} s "
            f"= {r['tokens_per_s']:.0f} tokens/s ({r['tokens_per_cpu_s']:.0f} per CPU-second); peak RSS above the loaded model {r['peak_rss_above_model_mb']:.0f} MiB"
            + (f"; peak GPU above the model {r['peak_gpu_above_model_mb']:.0f} MiB" if "peak_gpu_above_model_mb" in r else "")
        )
    print(
        f"speed-up: {ours['tokens_per_s'] / ref['tokens_per_s']:.2f}x wall-clock, "
        f"{ours['tokens_per_cpu_s'] / ref['tokens_per_cpu_s']:.2f}x per CPU-second (robust on a shared machine)"
    )
    if ours["peak_rss_above_model_mb"] > 0:
        print(f"peak RSS ratio (reference / ours): {ref['peak_rss_above_model_mb'] / ours['peak_rss_above_model_mb']:.2f}")
    if "peak_gpu_above_model_mb" in ours:
        print(f"peak GPU memory ratio (reference / ours): {ref['peak_gpu_above_model_mb'] / ours['peak_gpu_above_model_mb']:.2f}")
    diff = np.abs(vectors["ours"] - vectors["reference"]).max()
    scale = np.abs(vectors["reference"]).max()
    print(f"max |ours - reference| = {diff:.2e} (max |reference| = {scale:.2e})")


if __name__ == "__main__":
    main()
