"""The :class:`Index`: a study index and its bundle, answering image and text queries.

* :meth:`Index.search_image`: a map is projected on the bundle's atlas and encoded by the
  image head; studies are ranked by cosine between that latent and their text latents
  (``against="text"``, map -> abstracts) or image latents (``against="image"``).
* :meth:`Index.search_text`: the query is embedded with the bundle's text model (checked
  against the one the bundle was trained with) and encoded by the text head; studies are
  ranked by cosine against their text latents (or image latents).
* :meth:`Index.predict_map`: ridge regression from text latent to atlas coefficients,
  fitted on the training studies (penalty by CV on them only), gives the query's
  coefficients; the map is their sum over the atlas components on the MNI 2 mm grid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from niclip_ray._docs import fill_doc
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.features.text_fingerprint import check_text_model, text_model_sha256
from niclip_ray.model.bundle import TEXT_MODEL_SHA256, Bundle, load_bundle
from niclip_ray.retrieval.queries import check_in_brain, query_text
from niclip_ray.retrieval.ridge import RidgeModel, fit_ridge
from niclip_ray.retrieval.search import ExactSearch
from niclip_ray.retrieval.table import StudyIndex, read_index
from niclip_ray.vectors import l2_normalise

AGAINST = ("text", "image")
#: Columns of a search result: the study's ids, its full title, whether the bundle was trained on it.
RESULT_COLUMNS = ["query", "rank", "study_id", "pmid", "doi", "title", "in_training", "score"]


@dataclass(frozen=True)
class TextMatch:
    """A text query's answer: the nearest studies and the predicted map."""

    studies: pd.DataFrame
    coefficients: np.ndarray  # (dim,) float64
    image: nib.Nifti1Image


@fill_doc
class Index:
    """Search a study index built with a model bundle.

    Parameters
    ----------
    index : path or StudyIndex
        Directory written by ``niclip-ray index build``.
    bundle : path or Bundle
        The bundle the index was built with (checked through its digest).
    %(atlas_dir)s
    ridge_alphas : tuple of float, optional
        Penalties tried for the text -> coefficients regression.
    seed : int
        Seed of the regression's CV folds.
    """

    def __init__(
        self,
        index: str | os.PathLike | StudyIndex,
        bundle: str | os.PathLike | Bundle,
        *,
        atlas_dir: str | os.PathLike | None = None,
        ridge_alphas: tuple[float, ...] | None = None,
        seed: int = 0,
    ) -> None:
        from niclip_ray.decoding.decoder import bundle_digest
        from niclip_ray.model import CLIP

        self.studies = index if isinstance(index, StudyIndex) else read_index(index)
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        recorded = self.studies.meta.get("bundle_manifest")
        if self.bundle.path is not None and recorded and recorded != bundle_digest(self.bundle.path):
            raise InputError(f"the study index was built with another bundle ({recorded}); rebuild it with this one")
        self.model = CLIP.from_state_dict(self.bundle.state_dict).eval()
        self.atlas_dir = atlas_dir
        self.ridge_alphas = ridge_alphas
        self.seed = int(seed)
        self._projector = None
        self._builder = None
        self._ridge = None
        self._embedder = None
        self._searches: dict[str, ExactSearch] = {}

    def __len__(self) -> int:
        return len(self.studies)

    # -- image -> studies -------------------------------------------------------------------
    @property
    def projector(self):
        """The bundle's atlas projector on its mask grid (built on first use)."""
        if self._projector is None:
            from niclip_ray.atlas.mask import MaskGrid
            from niclip_ray.atlas.projection import Projector
            from niclip_ray.decoding.decoder import resolve_atlas

            mask = self.bundle.mask_path
            grid = MaskGrid.from_img(nib.load(str(mask))) if mask is not None else None
            self._projector = Projector(resolve_atlas(self.bundle, self.atlas_dir), grid=grid)
        return self._projector

    def image_latent(self, img: str | os.PathLike | nib.Nifti1Image, name: str | None = None) -> np.ndarray:
        """``(D,)`` float32 image latent of one 3-D map (checked to lie on the brain)."""
        label = name or (str(img) if not isinstance(img, nib.spatialimages.SpatialImage) else "in-memory image")
        img = check_in_brain(img, label)
        beta = self.projector.project_image(img, name=label)
        if not np.any(beta) or not np.isfinite(beta).all():
            raise InputError(f"map {label}: no signal on the atlas (all zero inside the atlas after resampling)")
        with torch.no_grad():
            return self.model.encode_image(torch.from_numpy(l2_normalise(beta[None, :])))[0].numpy()

    def rank(self, latents: np.ndarray, queries: list[str], top_k: int = 20, against: str = "text") -> pd.DataFrame:
        """The ``top_k`` studies nearest each query latent: :data:`RESULT_COLUMNS`."""
        if against not in AGAINST:
            raise ParameterError("against", f"must be one of {', '.join(AGAINST)}, got {against!r}")
        if against not in self._searches:
            latents_of = self.studies.text_latents if against == "text" else self.studies.image_latents
            self._searches[against] = ExactSearch(latents_of)
        rows, scores = self._searches[against].top_k(np.atleast_2d(latents), top_k)
        k = rows.shape[1]
        flat = rows.reshape(-1)
        return pd.DataFrame({
            "query": np.repeat(np.asarray(queries, dtype=object), k),
            "rank": np.tile(np.arange(1, k + 1), len(queries)),
            "study_id": self.studies.study_ids[flat],
            "pmid": self.studies.pmids[flat],
            "doi": self.studies.dois[flat],
            "title": self.studies.titles[flat],
            "in_training": self.studies.folds[flat] == "train",
            "score": scores.reshape(-1).astype(np.float64),
        })

    def search_image(self, img, top_k: int = 20, against: str = "text", name: str | None = None) -> pd.DataFrame:
        """Studies nearest a brain map (path or image)."""
        label = name or (Path(img).name if not isinstance(img, nib.spatialimages.SpatialImage) else "map")
        return self.rank(self.image_latent(img, name=label)[None, :], [label], top_k, against)

    # -- text -> studies and map ------------------------------------------------------------
    def _text_embedder(self):
        if self._embedder is None:
            from niclip_ray.features.text import TextEmbedder
            from niclip_ray.features.text_models import resolve_model

            config = self.bundle.config
            spec = resolve_model(str(config.get("text_model_id") or ""))
            check_text_model(config, spec.model_id, text_model_sha256(spec) if config.get(TEXT_MODEL_SHA256) else None,
                             where="the query embedder")
            self._embedder = TextEmbedder(spec, device="cpu")
            if self._embedder.dim != self.model.text_dim:
                raise InputError(f"text model {spec.model_id} gives {self._embedder.dim}-d embeddings but the "
                                 f"bundle's text head takes {self.model.text_dim}-d")
        return self._embedder

    def text_latent(self, query: str) -> np.ndarray:
        """``(D,)`` float32 text latent of a query (embedded with the bundle's text model)."""
        query = query_text(query)
        result = self._text_embedder().embed([query])
        if result.errors[0]:
            raise ParameterError("query", f"cannot be embedded: {result.errors[0]}")
        return self.encode_texts(result.vectors)[0]

    def encode_texts(self, embeddings: np.ndarray) -> np.ndarray:
        """``(n, D)`` text latents of raw text embeddings ``(n, text_dim)``."""
        with torch.no_grad():
            return self.model.encode_text(torch.from_numpy(l2_normalise(np.atleast_2d(embeddings)))).numpy()

    @property
    def training_rows(self) -> np.ndarray:
        """Rows of the training studies (every row when the bundle records no split)."""
        train = np.flatnonzero(self.studies.folds == "train")
        return train if len(train) else np.arange(len(self.studies))

    @property
    def ridge(self) -> RidgeModel:
        """Text latent -> atlas coefficients, fitted on :attr:`training_rows` (on first use)."""
        if self._ridge is None:
            rows = self.training_rows
            kwargs = {"alphas": self.ridge_alphas} if self.ridge_alphas else {}
            self._ridge = fit_ridge(self.studies.text_latents[rows], self.studies.coefficients[rows],
                                    n_folds=min(5, len(rows)), seed=self.seed, **kwargs)
        return self._ridge

    @property
    def map_builder(self):
        """Coefficients -> maps on the 2 mm brain-mask grid (built on first use)."""
        if self._builder is None:
            from niclip_ray.decoding.decoder import resolve_atlas
            from niclip_ray.retrieval.brain_maps import MapBuilder

            self._builder = MapBuilder(resolve_atlas(self.bundle, self.atlas_dir))
        return self._builder

    def predict_coefficients(self, text_latents: np.ndarray) -> np.ndarray:
        """``(n, dim)`` predicted atlas coefficients of text latents ``(n, D)``."""
        return self.ridge.predict(text_latents)

    def search_text(self, query: str, top_k: int = 20, against: str = "text") -> TextMatch:
        """Nearest studies and predicted brain map of a text query."""
        latent = self.text_latent(query)
        coefficients = self.predict_coefficients(latent[None, :])[0]
        return TextMatch(self.rank(latent[None, :], [query], top_k, against), coefficients,
                         self.map_builder.image(coefficients))
