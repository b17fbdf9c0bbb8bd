"""Time batch decoding against the reference's per-image prediction loop.

The reference decodes one map per call (``braindec/predict.py``, ``jobs/decoding_*``):
resample the map to the mask, load the atlas and project, rebuild the model from its
``.pth``, encode the whole vocabulary, compute the posterior, then loop in Python over
concepts and domains for the noisy-OR. We time, on the same maps and weights:

* ``reference``: that loop, model built per call (its jobs do this);
* ``reference, model once``: the same loop with the model and text features built once;
* ``niclip-ray``: a :class:`Decoder` built once, maps decoded shard by shard
  (:func:`niclip_ray.pipelines.decode.decode_items`: per-map projection with the cached
  Cholesky factor, then vectorised scoring and sparse noisy-OR);
* ``niclip-ray on Ray``: the whole ``decode`` stage (actor start-up included);

and, separately, the hierarchy maths alone at the full Cognitive Atlas size (851 tasks,
912 concepts) for many maps: Python loops per map against one sparse product.

All variants must agree on the posteriors (checked). The atlas is the DiFuMo stand-in on
NiMARE's 2 mm grid (built once in the niclip-ray cache if absent), the model has the
paper's shapes (4096-d text), the vocabulary is the built-in ontology.

Usage: python benchmarks/bench_decoding.py [--maps 24] [--dim 128] [--reference-maps 6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import scipy.linalg
import torch
from nilearn.datasets import load_sample_motor_activation_image
from nilearn.image import resample_to_img

from niclip_ray._testing import toy_state_dict, toy_vocabulary
from niclip_ray.atlas.difumo import load_atlas
from niclip_ray.atlas.mask import load_brain_mask
from niclip_ray.decoding.decoder import Decoder
from niclip_ray.decoding.map_files import collect_maps
from niclip_ray.decoding.posterior import noisy_or, task_posterior
from niclip_ray.model import CLIP
from niclip_ray.model.bundle import save_bundle
from niclip_ray.ontology import load_ontology
from niclip_ray.pipelines.decode import decode_items


def make_maps(out: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` noisy, rescaled copies of nilearn's real motor map (3 mm, its own grid)."""
    img = nib.load(load_sample_motor_activation_image())
    data = np.asarray(img.dataobj, dtype=np.float32)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        noisy = rng.uniform(0.5, 2.0) * data + rng.normal(0, 1.0, data.shape).astype(np.float32) * (data != 0)
        path = out / f"map_{i:04d}.nii.gz"
        nib.save(nib.Nifti1Image(noisy, img.affine), path)
        paths.append(path)
    return paths


class ReferenceLoop:
    """The reference's per-image prediction, step by step (our re-implementation of docs/method.md, "Decoding")."""

    def __init__(self, model_path, vocab_emb, prior, ontology, atlas_path, s, model_once):
        self.model_path, self.vocab_emb, self.prior, self.s = model_path, vocab_emb, prior, s
        self.atlas_path, self.mask = atlas_path, load_brain_mask()
        self.factor = None  # HEAD caches the Cholesky factor
        tasks = {t: i for i, t in enumerate(ontology.tasks["task_id"])}
        self.concept_tasks = [
            [tasks[t] for t in ontology.task_concepts.loc[ontology.task_concepts["concept_id"] == c, "task_id"]]
            for c in ontology.concepts["concept_id"]
        ]
        dom = ontology.concepts["domain_id"].to_numpy()
        self.domain_concepts = [list(np.flatnonzero(dom == d)) for d in ontology.domains["domain_id"]]
        self.model_once = self._model() if model_once else None

    def _model(self):
        model = CLIP.from_state_dict(torch.load(self.model_path, weights_only=True)).eval()
        text = torch.from_numpy(self.vocab_emb)
        text = text / (text.norm(dim=-1, keepdim=True) + 1e-8)
        with torch.no_grad():
            return model, model.encode_text(text)

    def __call__(self, path):
        img = resample_to_img(nib.load(str(path)), self.mask, interpolation="continuous", copy_header=True)
        maps = nib.load(str(self.atlas_path)).get_fdata(dtype=np.float32)  # the atlas is fetched per call
        support = np.any(maps != 0, axis=3)
        X = maps[support].astype(np.float64)
        if self.factor is None:
            self.factor = scipy.linalg.cho_factor(X.T @ X + 1e-6 * np.eye(X.shape[1]))
        y = np.nan_to_num(np.asarray(img.dataobj, dtype=np.float64)[support])
        beta = torch.tensor(scipy.linalg.cho_solve(self.factor, X.T @ y)[None, :], dtype=torch.float32)
        model, text_features = self.model_once or self._model()
        beta = beta / (beta.norm(dim=-1, keepdim=True) + 1e-8)
        with torch.no_grad():
            image_features = model.encode_image(beta)
        sim = (self.s * image_features @ text_features.T).flatten()
        lik = sim.softmax(dim=-1)
        prior = torch.from_numpy(self.prior).float()
        post = lik * prior / (lik * prior).sum()
        concept = torch.zeros(len(self.concept_tasks))
        for c, idx in enumerate(self.concept_tasks):
            concept[c] = 1 - (1 - post[idx]).prod()
        domain = torch.zeros(len(self.domain_concepts))
        for d, idx in enumerate(self.domain_concepts):
            domain[d] = 1 - (1 - concept[idx]).prod()
        return post.numpy()


def bench_hierarchy(n_maps: int, n_tasks: int = 851, n_concepts: int = 912, seed: int = 0) -> tuple[float, float]:
    """Posterior + two-level noisy-OR for ``n_maps`` maps: per-map Python loops vs vectorised."""
    rng = np.random.default_rng(seed)
    cosine = rng.uniform(-1, 1, (n_maps, n_tasks))
    prior = rng.random(n_tasks)
    prior /= prior.sum()
    links = [rng.choice(n_tasks, size=rng.integers(1, 6), replace=False) for _ in range(n_concepts)]
    domain_of = rng.integers(0, 10, n_concepts)
    tc = np.zeros((n_tasks, n_concepts))
    for c, idx in enumerate(links):
        tc[idx, c] = 1
    cd = np.zeros((n_concepts, 10))
    cd[np.arange(n_concepts), domain_of] = 1
    domains = [np.flatnonzero(domain_of == d) for d in range(10)]
    start = time.perf_counter()
    loop_out = []
    for row in cosine:
        sim = torch.from_numpy(20.0 * row)
        lik = sim.softmax(-1)
        post = lik * torch.from_numpy(prior) / (lik * torch.from_numpy(prior)).sum()
        concept = torch.zeros(n_concepts, dtype=torch.float64)
        for c, idx in enumerate(links):
            concept[c] = 1 - (1 - post[idx]).prod()
        domain = torch.zeros(10, dtype=torch.float64)
        for d, idx in enumerate(domains):
            domain[d] = 1 - (1 - concept[idx]).prod()
        loop_out.append(domain.numpy())
    t_loop = time.perf_counter() - start
    start = time.perf_counter()
    post = task_posterior(cosine, prior, 20.0).posterior
    domain = noisy_or(noisy_or(post, tc), cd)
    t_vec = time.perf_counter() - start
    np.testing.assert_allclose(domain, np.array(loop_out), atol=1e-9)
    return t_loop, t_vec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=24, help="maps decoded by niclip-ray")
    parser.add_argument("--reference-maps", type=int, default=6, help="maps timed with the reference loops")
    parser.add_argument("--dim", type=int, default=128, help="stand-in DiFuMo dimension (64..1024)")
    parser.add_argument("--text-dim", type=int, default=4096)
    parser.add_argument("--hierarchy-maps", type=int, default=200)
    parser.add_argument("--ray", action="store_true", help="also time the Ray decode stage")
    args = parser.parse_args()

    atlas = load_atlas(args.dim)  # real DiFuMo if cached, else the deterministic stand-in
    ontology = load_ontology("builtin")
    vocab = toy_vocabulary(ontology.task_names, text_dim=args.text_dim)
    state = toy_state_dict(text_dim=args.text_dim, dim=args.dim)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.save(state, tmp / "model.pth")
        bundle = save_bundle(tmp / "bundle", state, {"logit_scale": 20.0, "atlas_id": atlas.atlas_id,
                                                     "atlas_dim": args.dim}, vocab, ontology)
        (tmp / "maps").mkdir()
        paths = make_maps(tmp / "maps", max(args.maps, args.reference_maps))
        emb = np.stack(vocab["emb_combined"]).astype(np.float32)
        prior = vocab["prior"].to_numpy()

        timings = {}
        posts = {}
        for name, once in (("reference (model per call)", False), ("reference (model once)", True)):
            loop = ReferenceLoop(tmp / "model.pth", emb, prior, ontology, atlas.maps_path, 20.0, once)
            loop(paths[0])  # warm-up: caches the Cholesky factor, imports
            start = time.perf_counter()
            posts[name] = [loop(p) for p in paths[: args.reference_maps]]
            timings[name] = args.reference_maps / (time.perf_counter() - start)

        start = time.perf_counter()
        decoder = Decoder(bundle, atlas_dir=atlas.data_dir, topk=None)
        decoder.projector  # noqa: B018 - built once, like an actor does
        setup = time.perf_counter() - start
        items = collect_maps(paths[: args.maps])
        start = time.perf_counter()
        result = []
        for i in range(0, len(items), 8):
            result.append(decode_items(decoder, items[i : i + 8]).to_pandas())
        timings["niclip-ray (Decoder, shards of 8)"] = args.maps / (time.perf_counter() - start)
        ours = result[0]
        ours = ours[(ours["level"] == "task") & (ours["map_id"] == "map_0000")].set_index("term")
        ref = dict(zip(vocab["name"], posts["reference (model once)"][0]))
        np.testing.assert_allclose(ours.loc[list(ref), "prob"], list(ref.values()), atol=1e-5)

        if args.ray:
            from niclip_ray.pipelines import decode as stage
            from niclip_ray.runtime import RayOptions, ray_session

            with ray_session(RayOptions(quiet=True)):
                start = time.perf_counter()
                stage.run(items, bundle, tmp / "out", topk=10, atlas_dir=atlas.data_dir, shard_size=8)
                timings["niclip-ray on Ray (stage, incl. actor start)"] = args.maps / (time.perf_counter() - start)

    base = timings["reference (model per call)"]
    print(f"atlas {atlas.atlas_id}, text dim {args.text_dim}, vocabulary {len(vocab)} tasks; "
          f"Decoder set-up {setup:.2f} s (once)")
    for name, rate in timings.items():
        print(f"{name:48s} {rate:8.2f} maps/s   x{rate / base:7.1f}")
    t_loop, t_vec = bench_hierarchy(args.hierarchy_maps)
    print(f"posterior + noisy-OR, 851 tasks / 912 concepts, {args.hierarchy_maps} maps: loops {t_loop:.2f} s, "
          f"vectorised {t_vec * 1000:.1f} ms, x{t_loop / t_vec:.0f}")


if __name__ == "__main__":
    main()
