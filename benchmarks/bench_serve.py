"""Closed-loop load on ``niclip-ray serve`` over loopback, against the original's cost per image.

Deploys the service (Ray Serve on an embedded Ray) with a DiFuMo-512 bundle (``--bundle``:
the demo's ``work/demo/train/bundle``; default: one built here with the demo's shapes,
384-d text and the DiFuMo-512 stand-in), then:

* **load**: ``--clients`` threads, each posting a 2 mm map and waiting for the answer
  before the next, ``--requests`` in all: throughput, p50/p95/p99 latency, errors, peak
  RSS of each replica (from ``/metrics``);
* **original**: the reference's per-image prediction (``bench_decoding.ReferenceLoop``),
  model loaded per call as its ``predict`` CLI does, and warm (model loaded once);
* **kill**: a second load run during which one replica's process is SIGKILLed: failed
  requests, and the seconds until Serve has all replicas running again (no restart by hand).

The service's answer for the first map is checked against ``Decoder.transform``.

Usage: python benchmarks/bench_serve.py [--bundle DIR] [--replicas 2] [--clients 8] [--requests 400]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import requests
import torch
from nilearn.datasets import load_sample_motor_activation_image
from nilearn.image import resample_to_img

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decoding import ReferenceLoop

from niclip_ray._testing import toy_state_dict, toy_vocabulary
from niclip_ray.atlas.difumo import load_atlas
from niclip_ray.atlas.mask import load_brain_mask
from niclip_ray.decoding.decoder import Decoder
from niclip_ray.model.bundle import load_bundle, save_bundle
from niclip_ray.ontology import load_ontology


def make_maps_2mm(out: Path, n: int, seed: int = 0) -> list[bytes]:
    """``n`` noisy copies of nilearn's motor map on the 2 mm MNI152 mask grid, as .nii.gz bytes."""
    img = resample_to_img(nib.load(load_sample_motor_activation_image()), load_brain_mask(),
                          interpolation="continuous", copy_header=True, force_resample=True)
    data = np.nan_to_num(np.asarray(img.dataobj, dtype=np.float32))
    rng = np.random.default_rng(seed)
    bodies = []
    for i in range(n):
        noisy = rng.uniform(0.5, 2.0) * data + rng.normal(0, 1.0, data.shape).astype(np.float32) * (data != 0)
        path = out / f"map_{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(noisy, img.affine), path)
        bodies.append(path.read_bytes())
    return bodies


def demo_shaped_bundle(out: Path, dim: int = 512, text_dim: int = 384) -> Path:
    atlas = load_atlas(dim)
    ontology = load_ontology("builtin")
    config = {"logit_scale": 20.0, "atlas_id": atlas.atlas_id, "atlas_dim": dim, "text_model_id": "toy-random"}
    return save_bundle(out, toy_state_dict(text_dim, dim), config,
                       toy_vocabulary(ontology.task_names, text_dim), ontology)


def load(url: str, bodies: list[bytes], clients: int, n_requests: int, during=None) -> dict:
    """Closed loop: ``clients`` threads share ``n_requests``; ``during()`` runs meanwhile (in this thread)."""
    latencies, errors, lock = [], [], threading.Lock()
    counter = iter(range(n_requests))

    def client():
        session = requests.Session()
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            start = time.perf_counter()
            try:
                response = session.post(f"{url}/v1/decode", data=bodies[i % len(bodies)],
                                        params={"top_k": 10}, timeout=120)
                ok = response.status_code == 200
            except requests.RequestException:
                ok = False
            with lock:
                (latencies if ok else errors).append(time.perf_counter() - start)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    extra = during() if during else None
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies)
    return {"requests": n_requests, "ok": len(lat), "errors": len(errors), "wall_s": round(wall, 2),
            "throughput_rps": round(len(lat) / wall, 2),
            **{f"p{q}_ms": round(float(np.percentile(lat, q)) * 1000, 1) if len(lat) else None for q in (50, 95, 99)},
            "during": extra}


def replica_metrics(url: str, replicas: int, tries: int = 60) -> dict:
    """``/metrics`` of each replica (requests land on a random one, so ask until all answered)."""
    seen = {}
    for _ in range(tries):
        body = requests.get(f"{url}/metrics", timeout=30).json()
        seen[body["replica"]] = body
        if len(seen) >= replicas:
            break
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="bundle directory (default: a demo-shaped DiFuMo-512 one)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--kill-requests", type=int, default=200)
    parser.add_argument("--reference-maps", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    from ray import serve

    from niclip_ray.runtime import RayOptions, ray_session
    from niclip_ray.serve.app import ServiceSettings
    from niclip_ray.serve.control import service_status, start_service

    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle_path = args.bundle or demo_shaped_bundle(tmp / "bundle")
        (tmp / "maps").mkdir()
        bodies = make_maps_2mm(tmp / "maps", 16)
        bundle = load_bundle(bundle_path)
        decoder = Decoder(bundle_path, topk=10)
        figures["model"] = {k: decoder.describe()[k] for k in ("atlas_id", "atlas_dim", "n_terms", "logit_scale")}

        # the original's cost per image, on the same maps and weights
        torch.save(bundle.state_dict, tmp / "model.pth")
        vocab = bundle.vocabulary
        emb = np.stack(vocab[f"emb_{decoder.embedding}"]).astype(np.float32)
        paths = sorted((tmp / "maps").iterdir())[: args.reference_maps]
        for name, once in (("original_per_call", False), ("original_warm", True)):
            loop = ReferenceLoop(tmp / "model.pth", emb, vocab["prior"].to_numpy(), bundle.ontology,
                                 decoder.atlas.maps_path, decoder.logit_scale, once)
            loop(paths[0])
            start = time.perf_counter()
            for p in paths:
                loop(p)
            figures[name] = {"images_per_s": round(len(paths) / (time.perf_counter() - start), 3)}

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with ray_session(RayOptions(quiet=True)):
            try:
                start = time.perf_counter()
                url = start_service(ServiceSettings(bundle=str(bundle_path)), port=port, replicas=args.replicas)
                figures["startup_s"] = round(time.perf_counter() - start, 1)
                got = requests.post(f"{url}/v1/decode", data=bodies[0], params={"top_k": 10}, timeout=120).json()
                (tmp / "first.nii.gz").write_bytes(bodies[0])
                want = decoder.transform(tmp / "first.nii.gz")
                want = want[want["level"] == "task"]
                np.testing.assert_allclose([r["prob"] for r in got["results"]["task"]], want["prob"], rtol=1e-6)

                load(url, bodies, args.clients, 2 * args.clients)  # warm-up
                figures["load"] = load(url, bodies, args.clients, args.requests)
                figures["replicas"] = {k: {"peak_rss_mib": v["peak_rss_mib"], "batches": v["batches"],
                                           "mean_batch": round(v["batched_maps"] / max(v["batches"], 1), 2)}
                                       for k, v in replica_metrics(url, args.replicas).items()}

                def kill_one():
                    time.sleep(2.0)
                    victim = requests.get(f"{url}/metrics", timeout=30).json()
                    os.kill(victim["pid"], signal.SIGKILL)
                    killed = time.perf_counter()
                    deadline = killed + 300
                    while time.perf_counter() < deadline:
                        time.sleep(0.5)
                        states = service_status()["deployments"]["NiclipDecoder"]["replicas"]
                        if states.get("RUNNING", 0) == args.replicas and set(states) == {"RUNNING"}:
                            alive = replica_metrics(url, args.replicas, tries=20)
                            if victim["replica"] not in alive and len(alive) == args.replicas:
                                return {"killed_pid": victim["pid"],
                                        "recovered_s": round(time.perf_counter() - killed, 1)}
                    return {"killed_pid": victim["pid"], "recovered_s": None}

                figures["kill"] = load(url, bodies, args.clients, args.kill_requests, during=kill_one)
                after = requests.post(f"{url}/v1/decode", data=bodies[1], timeout=120)
                figures["kill"]["request_after_recovery"] = after.status_code
            finally:
                serve.shutdown()

    warm = figures["original_warm"]["images_per_s"]
    figures["speedup_vs_original_warm"] = round(figures["load"]["throughput_rps"] / warm, 1)
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
