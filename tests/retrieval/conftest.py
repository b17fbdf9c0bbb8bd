"""A tiny retrieval world: 30 real n-back/flanker studies, their features, and a 384-d toy bundle.

Image features come from the toy atlas through the images stage's pure function, text
features from the packaged MiniLM through the text stage's (no Ray); the bundle's heads
are random, but its text head takes MiniLM's 384-d embeddings and it records MiniLM as
its text model, with a fingerprint and a train/val/test split.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from niclip_ray._testing import toy_atlas, toy_atlas_id, toy_state_dict
from niclip_ray.atlas.difumo import load_atlas
from niclip_ray.atlas.projection import get_projector
from niclip_ray.corpus import ingest, load_corpus
from niclip_ray.features.text import TextEmbedder
from niclip_ray.features.text_fingerprint import text_model_sha256
from niclip_ray.model.bundle import save_bundle
from niclip_ray.pipelines.images import process_studies, study_items
from niclip_ray.pipelines.text import process_texts, text_items
from niclip_ray.tables import write_parquet_atomic

N_STUDIES = 30
TEXT_MODEL = "all-minilm-l6-v2"


@dataclass
class World:
    corpus: Path
    features: Path
    atlas_dir: Path
    bundle: Path
    split: dict
    root: Path

    def bundle_with(self, name: str, **config) -> Path:
        """Another bundle with the same weights and some config keys changed."""
        from niclip_ray.model.bundle import load_bundle

        bundle = load_bundle(self.bundle)
        return save_bundle(self.root / name, bundle.state_dict, {**bundle.config, **config},
                           mask_file=bundle.mask_path)


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("retrieval")
    full, _ = ingest("nimare:nback_vs_flanker", root / "full")
    studies = full.studies.iloc[:N_STUDIES].copy()
    studies["pmid"] = [str(30000000 + i) for i in range(len(studies))]
    corpus = root / "corpus"
    corpus.mkdir()
    studies.to_parquet(corpus / "studies.parquet", index=False)
    full.coordinates[full.coordinates["study_id"].isin(studies["study_id"])].to_parquet(
        corpus / "coordinates.parquet", index=False)

    atlas_dir = root / "atlas"
    mask = toy_atlas(atlas_dir, dim=64)
    features = root / "features"
    projector = get_projector(load_atlas(64, data_dir=atlas_dir))
    write_parquet_atomic(process_studies(study_items(corpus), projector), features / "images" / "part-00000.parquet")
    texts = process_texts(text_items(corpus, "abstract"), TextEmbedder(TEXT_MODEL, device="cpu"), "abstract")
    write_parquet_atomic(texts, features / "text" / "part-00000.parquet")

    ids = sorted(load_corpus(corpus).studies["study_id"])
    order = np.random.default_rng(0).permutation(len(ids))
    split = {"train": sorted(ids[i] for i in order[:20]), "val": sorted(ids[i] for i in order[20:23]),
             "test": sorted(ids[i] for i in order[23:])}
    config = {"dropout": 0.0, "logit_scale": 20.0, "text_model_id": TEXT_MODEL,
              "text_model_sha256": text_model_sha256(TEXT_MODEL), "atlas_id": toy_atlas_id(64), "atlas_dim": 64,
              "training": {"section": "abstract", "split": split}}
    bundle = save_bundle(root / "bundle", toy_state_dict(text_dim=384, dim=64), config, mask_file=mask)
    return World(corpus, features, atlas_dir, bundle, split, root)
