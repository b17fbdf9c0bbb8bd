"""The :class:`Decoder`: brain maps -> tidy task / concept / domain predictions.

Built from a model bundle; nothing to fit. Per map (``docs/method.md``, "Decoding"):

1. load and check the map, resample it to the bundle's mask grid and project it on the
   atlas by least squares (:meth:`niclip_ray.atlas.projection.Projector.project_image`);
2. L2-normalise the coefficients and run the CLIP image head;
3. cosine against the vocabulary's text features (computed once, at construction);
4. posterior, Bayes factor, and noisy-OR concepts and domains
   (:mod:`niclip_ray.decoding.posterior`), vectorised over all maps of a batch;
5. tasks ranked by ``rank_by``, top terms flagged (:mod:`niclip_ray.decoding.ranking`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from niclip_ray._docs import fill_doc
from niclip_ray.atlas.maps import load_map
from niclip_ray.decoding.posterior import noisy_or, task_posterior, top_k
from niclip_ray.decoding.ranking import DEFAULT_RANK_BY, against_map, hub_terms, parse_rank_by, task_scores
from niclip_ray.decoding.schema import RESULT_COLUMNS
from niclip_ray.errors import ConfigError, InputError, ParameterError
from niclip_ray.model.bundle import Bundle, load_bundle, logit_scale_problem
from niclip_ray.model.vocabulary import embedding_matrix
from niclip_ray.vectors import l2_normalise

log = logging.getLogger(__name__)

_STANDIN_SEED = re.compile(r"standin-seed(\d+)$")
#: Finite values beyond this (a millionth of float32's maximum) overflow in resampling.
OVERFLOW_ABS = float(np.finfo(np.float32).max) / 1e6


def resolve_atlas(bundle: Bundle, atlas_dir: str | os.PathLike | None = None, allow_atlas_mismatch: bool = False):
    """Find the atlas a bundle was trained with (cheap: no projector is built).

    The atlas has ``config['atlas_dim']`` components (default: the image head width) and
    comes from ``atlas_dir`` (a nilearn data directory) or nilearn's default locations.

    Raises
    ------
    AtlasNotFound
        When no atlas is found, or the atlas found is not the one recorded in the bundle
        (e.g. the bundle was trained on real DiFuMo and only a stand-in is available),
        unless ``allow_atlas_mismatch``; it names ``atlas_dir``.
    ConfigError
        When the bundle records an atlas dimension DiFuMo does not have.
    """
    from niclip_ray.atlas.difumo import AtlasNotFound, load_atlas

    config = bundle.config
    expected = config.get("atlas_id")
    seed_match = _STANDIN_SEED.search(expected or "")
    standin_expected = bool(expected) and "standin" in expected
    try:
        atlas = load_atlas(
            dim=int(config.get("atlas_dim") or config["image_dim"]),
            data_dir=atlas_dir,
            allow_standin=standin_expected or allow_atlas_mismatch or not expected,
            seed=int(seed_match.group(1)) if seed_match else 0,
        )
    except ParameterError as exc:  # load_atlas's data_dir is atlas_dir here
        needs = f"; the bundle needs atlas {expected}" if expected else ""
        raise type(exc)("atlas_dir", f"{exc.problem}{needs}") from exc
    except ConfigError as exc:
        raise ConfigError(f"the bundle needs atlas {expected}: {exc}") from exc
    if expected and atlas.atlas_id != expected:
        if not allow_atlas_mismatch:
            raise AtlasNotFound(
                "atlas_dir",
                f"finds atlas {atlas.atlas_id} but the bundle was trained on atlas {expected}; "
                "point it at the right atlas, or allow the mismatch",
            )
        log.warning("the bundle was trained on atlas %s but %s was found; decoding anyway", expected, atlas.atlas_id)
    return atlas


def bundle_digest(path: str | os.PathLike) -> str:
    """First 16 hex digits of the sha256 of a bundle's ``manifest.json`` (which lists every file's sha256)."""
    return hashlib.sha256((Path(path) / "manifest.json").read_bytes()).hexdigest()[:16]


@fill_doc
class Decoder:
    """Decode brain maps with a NiCLIP model bundle.

    Like NiMARE's decoders, the constructor only loads (nothing is fitted): the bundle, the
    CLIP text features of its vocabulary, and, on first use, the atlas projector.
    :meth:`get_params` and :meth:`describe` say what it runs.

    Parameters
    ----------
    bundle : Bundle or path
        A bundle with a vocabulary (see :func:`niclip_ray.model.bundle.load_bundle`).
    topk : int, "all" or None
        Tasks and concepts kept per map (``"all"`` or None: every one). All domains are kept.
    logit_scale : float, optional
        Scale ``s`` of the similarities (default: the bundle's ``config['logit_scale']``,
        else the learned value). The paper's jobs use 20. A finite number above 0, at most
        :data:`~niclip_ray.model.bundle.MAX_LOGIT_SCALE`.
    hierarchical : bool, optional
        Also give concepts and domains (noisy-OR). Default: when the bundle has an ontology.
    projector : Projector, optional
        Atlas projector to use (default: one for :func:`resolve_atlas`'s atlas on the
        bundle's mask grid, or NiMARE's 2 mm brain-mask grid, built on the first map).
    %(atlas_dir)s
    allow_atlas_mismatch : bool
        Decode even when the atlas found differs from the bundle's.
    embedding : str, optional
        Vocabulary embedding kind (default: ``config['vocabulary_embedding']`` or ``combined``).
    rank_by : {"posterior", "bayes_factor", "likelihood"}
        The task score that orders (and cuts at ``topk``) each map's tasks
        (:mod:`niclip_ray.decoding.ranking`; ``bayes-factor`` is read too). The default,
        ``posterior``, is the paper's. Concepts and domains are ranked by their posterior.
    """

    def __init__(
        self,
        bundle: Bundle | str | os.PathLike,
        *,
        topk: int | str | None = 10,
        logit_scale: float | None = None,
        hierarchical: bool | None = None,
        projector=None,
        atlas_dir: str | os.PathLike | None = None,
        allow_atlas_mismatch: bool = False,
        embedding: str | None = None,
        rank_by: str = DEFAULT_RANK_BY,
    ) -> None:
        from niclip_ray.model import CLIP

        topk = _top_k(topk)
        if logit_scale is not None and (problem := logit_scale_problem(logit_scale)):
            raise ParameterError("logit_scale", problem)
        self.rank_by = parse_rank_by(rank_by)
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        vocabulary = self.bundle.require_vocabulary()
        self.topk = topk
        self.logit_scale = float(logit_scale) if logit_scale is not None else self.bundle.logit_scale
        self.model = CLIP.from_state_dict(self.bundle.state_dict).eval()
        self.embedding = embedding or self.bundle.config.get("vocabulary_embedding", "combined")
        text = embedding_matrix(vocabulary, self.embedding)
        text = torch.from_numpy(l2_normalise(text, dtype=np.float64).astype(np.float32))
        with torch.no_grad():
            self.text_features = self.model.encode_text(text).numpy()  # (V, D), unit rows
        self.terms = vocabulary["name"].to_numpy(dtype=object)
        self.term_ids = vocabulary["term_id"].to_numpy(dtype=object)
        self.prior = vocabulary["prior"].to_numpy(dtype=np.float64)
        ontology = self.bundle.ontology
        self.hierarchical = ontology is not None if hierarchical is None else bool(hierarchical)
        if self.hierarchical and ontology is None:
            raise ParameterError("hierarchical", "needs a bundle with an ontology; attach one with the vocabulary")
        if self.hierarchical:
            self.task_concept = ontology.task_concept_matrix
            self.concept_domain = ontology.concept_domain_matrix
            self.concepts = ontology.concepts[["concept_id", "name"]].to_numpy(dtype=object)
            self.domains = ontology.domains[["domain_id", "name"]].to_numpy(dtype=object)
        self.atlas_dir = atlas_dir
        self.allow_atlas_mismatch = bool(allow_atlas_mismatch)
        self._projector = projector
        self._atlas = None
        self._warned_standin = False

    @classmethod
    def from_bundle(cls, path: str | os.PathLike, **kwargs) -> Decoder:
        """A decoder for the bundle directory ``path`` (keyword arguments as the constructor's)."""
        return cls(path, **kwargs)

    @classmethod
    def from_reference(
        cls,
        *,
        model: str | os.PathLike,
        vocabulary: str | os.PathLike,
        vocabulary_emb: str | os.PathLike,
        vocabulary_prior: str | os.PathLike,
        cognitiveatlas: str | os.PathLike | None = None,
        reduced: bool = True,
        mask: str | os.PathLike | None = None,
        logit_scale: float = 20.0,
        **kwargs,
    ) -> Decoder:
        """A decoder for the original NiCLIP files, as ``niclip-ray predict`` reads them.

        Parameters
        ----------
        model, vocabulary, vocabulary_emb, vocabulary_prior : path
            CLIP weights ``.pth``, names ``.txt``, embeddings ``.npy`` ``(V, D)`` and prior
            ``.npy`` ``(V,)`` (or ``name, prior`` CSV).
        cognitiveatlas : path, optional
            Cognitive Atlas directory; with it, concepts and domains are decoded too.
        reduced : bool
            Reduced Cognitive Atlas task set.
        mask : path, optional
            Brain mask NIfTI giving the resampling grid.
        logit_scale : float
            Similarity scale (the paper's jobs use 20; the original CLI's default is 10).
        **kwargs
            The constructor's other keywords (``topk``, ``hierarchical``, ``atlas_dir``,
            ``allow_atlas_mismatch``, ``rank_by``). ``atlas_dir`` defaults, as for ``predict``, to
            ``$BRAINDEC_DATA/nilearn`` when it holds DiFuMo.
        """
        from niclip_ray.decoding.predict import braindec_atlas_dir
        from niclip_ray.model.reference import bundle_from_reference

        bundle = bundle_from_reference(
            model, vocabulary, vocabulary_emb, vocabulary_prior,
            cognitiveatlas=cognitiveatlas, reduced=reduced, mask=mask, logit_scale=logit_scale,
        )
        if kwargs.get("atlas_dir") is None:
            kwargs["atlas_dir"] = braindec_atlas_dir()
        return cls(bundle, logit_scale=logit_scale, **kwargs)

    def get_params(self) -> dict:
        """The constructor's parameters, as scikit-learn's and NiMARE's estimators give them.

        Defaults are resolved (logit scale, hierarchical, embedding kind), so
        ``Decoder(**decoder.get_params())`` decodes the same way; a given projector is left
        out (one is built again from the bundle and ``atlas_dir``).
        """
        return {
            "bundle": str(self.bundle.path) if self.bundle.path is not None else self.bundle,
            "topk": self.topk,
            "logit_scale": self.logit_scale,
            "hierarchical": self.hierarchical,
            "atlas_dir": self.atlas_dir,
            "allow_atlas_mismatch": self.allow_atlas_mismatch,
            "embedding": self.embedding,
            "rank_by": self.rank_by,
        }

    def describe(self) -> dict:
        """What this decoder runs, for a methods section or a run record.

        Cheap: the atlas is found, but no projector is built.

        Returns
        -------
        dict
            ``bundle`` (directory, None in memory), ``bundle_sha256`` (:func:`bundle_digest`),
            ``text_model_id`` and ``n_train_studies`` (as the bundle records them, else None),
            ``atlas_id``, ``atlas_standin``, ``atlas_dim``, ``vocabulary_embedding``,
            ``n_terms`` (terms per decoded level), ``prior`` (``uniform`` or ``vocabulary``),
            ``logit_scale``, ``topk``, ``hierarchical`` and ``rank_by``.
        """
        config = self.bundle.config
        train_ids = config.get("training", {}).get("split", {}).get("train")
        n_terms = {"task": len(self.terms)}
        if self.hierarchical:
            n_terms.update(concept=len(self.concepts), domain=len(self.domains))
        atlas_dim = self._projector.dim if self._projector is not None else self.atlas.dim
        return {
            "bundle": str(self.bundle.path) if self.bundle.path is not None else None,
            "bundle_sha256": bundle_digest(self.bundle.path) if self.bundle.path is not None else None,
            "text_model_id": config.get("text_model_id"),
            "n_train_studies": len(train_ids) if train_ids is not None else None,
            "atlas_id": self.atlas_id,
            "atlas_standin": "standin" in self.atlas_id,
            "atlas_dim": int(atlas_dim),
            "vocabulary_embedding": self.embedding,
            "n_terms": n_terms,
            "prior": "uniform" if np.allclose(self.prior, self.prior[0], rtol=1e-12, atol=0) else "vocabulary",
            "logit_scale": self.logit_scale,
            "topk": self.topk,
            "hierarchical": self.hierarchical,
            "rank_by": self.rank_by,
        }

    @property
    def atlas(self):
        """The bundle's atlas (:func:`resolve_atlas`, found on first use)."""
        if self._atlas is None:
            self._atlas = resolve_atlas(self.bundle, self.atlas_dir, self.allow_atlas_mismatch)
        return self._atlas

    @property
    def projector(self):
        """The atlas projector (built on first use)."""
        if self._projector is None:
            from niclip_ray.atlas.mask import MaskGrid
            from niclip_ray.atlas.projection import Projector

            mask = self.bundle.mask_path
            grid = MaskGrid.from_img(nib.load(str(mask))) if mask is not None else None
            self._projector = Projector(self.atlas, grid=grid)
        return self._projector

    @property
    def atlas_id(self) -> str:
        """Identifier of the atlas used for projection."""
        return self._projector.atlas_id if self._projector is not None else self.atlas.atlas_id

    def project(self, img: str | os.PathLike | nib.Nifti1Image, name: str | None = None) -> np.ndarray:
        """Atlas coefficients ``(dim,)`` float32 of one 3-D map (``projector.project_image``).

        Raises
        ------
        InputError
            Unreadable map, wrong dimensionality, all NaN, outside MNI space, values near
            float32's maximum (overflow), or no signal on the atlas (e.g. an all-zero map).
            The message names the map.
        """
        label = name or (str(img) if not isinstance(img, nib.spatialimages.SpatialImage) else "in-memory image")
        img = load_map(img, name=label)
        data = np.asarray(img.dataobj)
        peak = float(np.abs(data[np.isfinite(data)]).max())
        if peak > OVERFLOW_ABS:
            raise InputError(
                f"map {label}: values reach {peak:.3g}, near float32's maximum ({np.finfo(np.float32).max:.3g}); "
                "the map overflowed (rescale it)"
            )
        beta = self.projector.project_image(img, name=label)
        if not np.any(beta) or not np.isfinite(beta).all():
            raise InputError(f"map {label}: no signal on the atlas (all zero inside the atlas after resampling)")
        return beta

    def image_features(self, betas: np.ndarray) -> np.ndarray:
        """CLIP image features ``(n, D)`` float32 of atlas coefficients ``(n, dim)``."""
        x = torch.from_numpy(l2_normalise(np.atleast_2d(betas), dtype=np.float64).astype(np.float32))
        with torch.no_grad():
            return self.model.encode_image(x).numpy()

    def decode_features(
        self, betas: np.ndarray, map_ids: list[str], *, rank_by: str | None = None, flag_hubs: bool = True
    ) -> pd.DataFrame:
        """Decode projected maps; one tidy frame for all of them.

        Parameters
        ----------
        betas : (n, dim) array
            Atlas coefficients, one row per map.
        map_ids : list of str, length n
        rank_by : str, optional
            Task ranking for this call (default: :attr:`rank_by`).
        flag_hubs : bool
            Flag hubs among these maps (:func:`~niclip_ray.decoding.ranking.hub_terms`); False
            leaves ``hub`` null, for maps that were not decoded together (a service batch of
            several clients' uploads).

        Returns
        -------
        DataFrame
            :data:`~niclip_ray.decoding.schema.RESULT_COLUMNS`; the :attr:`topk` best tasks (by
            ``rank_by``) and concepts and every domain of each map, ``rank`` from 1 per map and
            level, the flags of :mod:`~niclip_ray.decoding.ranking` (nullable booleans), and the
            :attr:`atlas_id` the maps were projected on. Concept and domain rows have NaN
            similarity, likelihood, prior and Bayes factor, and a null ``against_map``.

        Warns
        -----
        UserWarning
            Once per decoder, when the atlas is the offline stand-in rather than DiFuMo.
        """
        betas = np.atleast_2d(np.asarray(betas, dtype=np.float32))
        if len(map_ids) != len(betas):
            raise ValueError(f"{len(map_ids)} map ids for {len(betas)} maps")
        if not len(betas):
            return pd.DataFrame(columns=RESULT_COLUMNS)
        cosine = self.image_features(betas).astype(np.float64) @ self.text_features.astype(np.float64).T
        post = task_posterior(cosine, self.prior, self.logit_scale)
        order = top_k(task_scores(post, self.rank_by if rank_by is None else rank_by), None)
        frames = [
            _tidy(
                "task", map_ids, post.posterior, order[:, : self.topk], self.term_ids, self.terms,
                {"similarity": post.similarity, "likelihood": post.likelihood,
                 "prior": np.broadcast_to(post.prior, post.posterior.shape), "bayes_factor": post.bayes_factor},
                hub_terms(order) if flag_hubs else None,
            )
        ]
        if self.hierarchical:
            concept = noisy_or(post.posterior, self.task_concept)
            domain = noisy_or(concept, self.concept_domain)
            order = top_k(concept, None)
            hubs = hub_terms(order) if flag_hubs else None
            frames.append(_tidy("concept", map_ids, concept, order[:, : self.topk], *self.concepts.T, {}, hubs))
            frames.append(_tidy("domain", map_ids, domain, top_k(domain, None), *self.domains.T, {}, None))
        atlas_id = self._features_atlas_id()
        self._warn_if_standin(atlas_id)
        return pd.concat(frames, ignore_index=True).assign(atlas_id=atlas_id)[RESULT_COLUMNS]

    def _features_atlas_id(self) -> str:
        """The atlas of the coefficients: the one found if any, else the one the bundle records.

        Decoding coefficients computed elsewhere needs no atlas on disk.
        """
        if self._projector is not None or self._atlas is not None:
            return self.atlas_id
        return str(self.bundle.config.get("atlas_id") or "")

    def _warn_if_standin(self, atlas_id: str) -> None:
        if "standin" in atlas_id and not self._warned_standin:
            self._warned_standin = True
            warnings.warn(
                f"decoding on {atlas_id}, an offline stand-in for the DiFuMo atlas: the predictions show "
                "that the pipeline runs, not what the maps mean; use a bundle trained on the real DiFuMo",
                UserWarning,
                stacklevel=3,
            )

    def transform(
        self,
        imgs: str | os.PathLike | nib.spatialimages.SpatialImage | list,
        names: str | list[str] | None = None,
        errors: str = "rows",
        strict: bool = False,
    ) -> pd.DataFrame:
        """Decode maps into one tidy frame, as ``niclip-ray decode`` does.

        Parameters
        ----------
        imgs : path, nibabel image, or list of them
            NIfTI files, directories of maps (searched recursively), NeuroVault
            ``collection_<id>/`` directories, or images in memory. A 4-D file or image gives
            one map per volume (``<id>:<k>``). A file's map id is its name without
            ``.nii[.gz]``, or its path when another map of the call has that name;
            a NeuroVault map's is ``collection_<c>/image_<i>``
            (:func:`~niclip_ray.decoding.map_files.collect_maps`).
        names : str or list of str, optional
            Map ids of the images in memory, one per image, in order. Default: ``map`` for
            a single image, ``map-{i}`` for the image at position i of a list.
        errors : {"rows", "raise"}
            ``rows``: a map that cannot be decoded gets one row with its ``error`` (the
            others are decoded). ``raise``: the first such map raises.
        strict : bool
            Refuse maps without a spatial transform or only partly over the brain mask
            (otherwise their rows carry a ``warning``).

        Returns
        -------
        DataFrame
            The columns of the decode contract
            (:data:`~niclip_ray.decoding.schema.DECODE_SCHEMA`): :meth:`decode_features`'s,
            ``source_path`` (None in memory), ``error``, ``warning``, and a NeuroVault
            map's ``collection_id``, ``image_id``, ``name`` and ``contrast``.

        Raises
        ------
        InputError
            With ``errors="raise"``: a map cannot be decoded, or its scores are not numbers
            (:func:`nonfinite_maps`); the message names it. Always: a directory holds no
            map, or two maps have one id.
        ParameterError
            ``names`` does not give one distinct id per image in memory.
        """
        from niclip_ray.decoding.batch import decode_maps  # it decodes through this module
        from niclip_ray.decoding.map_files import check_unique, image_items, source_items

        many = isinstance(imgs, (list, tuple))
        inputs = list(imgs) if many else [imgs]
        in_memory = [i for i, img in enumerate(inputs) if isinstance(img, nib.spatialimages.SpatialImage)]
        if names is None:
            names = [f"map-{i}" for i in in_memory] if many else ["map"] * len(in_memory)
        else:
            names = [names] if isinstance(names, str) else list(names)
            if len(names) != len(in_memory) or len(set(names)) != len(names):
                raise ParameterError("names", f"needs one distinct id per image in memory; got {names} for "
                                     f"{len(in_memory)} images")
        named = dict(zip(in_memory, names))
        files = iter(source_items([img for i, img in enumerate(inputs) if i not in named]))
        items = []
        for i, img in enumerate(inputs):
            items += image_items(img, named[i]) if i in named else next(files)
        check_unique(items)
        return decode_maps(self, items, strict=strict, errors=errors)


def nonfinite_maps(frame: pd.DataFrame) -> dict[str, str]:
    """The maps of a decoding result whose scores are not all numbers, each with its error message.

    Every row needs a finite ``prob``; task rows also a finite ``similarity``, ``likelihood``
    and ``prior``. (A Bayes factor is infinite for a posterior of 1 and NaN for a prior of 0,
    by definition.) Such a map has no result: its probabilities and ranks mean nothing.

    Parameters
    ----------
    frame : DataFrame
        :data:`~niclip_ray.decoding.schema.RESULT_COLUMNS`, as :meth:`Decoder.decode_features` gives.

    Returns
    -------
    dict of str to str
        Map id -> ``map ID: decoding gave NaN or infinite scores ...``; empty when all are numbers.
    """
    task = (frame["level"] == "task").to_numpy()
    scores = frame[["similarity", "likelihood", "prior"]].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(frame["prob"].to_numpy(dtype=np.float64)) | (task & ~np.isfinite(scores).all(axis=1))
    return {
        map_id: f"map {map_id}: decoding gave NaN or infinite scores, so it has no result (the bundle's weights "
                "overflow on this map)"
        for map_id in dict.fromkeys(frame.loc[bad, "map_id"])
    }


def _top_k(topk: int | str | None) -> int | None:
    """A decoder's ``topk``: a whole number from 1, or None for ``"all"`` or None."""
    if topk is None or (isinstance(topk, str) and topk.strip().lower() == "all"):
        return None
    try:
        k = int(topk)
    except (TypeError, ValueError):
        raise ParameterError("topk", f"must be a whole number, 'all' or None, got {topk!r}") from None
    if k < 1 or (k != topk and not isinstance(topk, str)):
        raise ParameterError("topk", f"must be a whole number from 1, 'all' or None, got {topk!r}")
    return k


def _tidy(level: str, map_ids, prob, order, ids, names, extra: dict[str, np.ndarray], hubs) -> pd.DataFrame:
    """Rows of one level: ``order`` (n, k) term indices per map, ``extra`` task scores, ``hubs`` (V,) bools or None."""
    n, k = order.shape
    rows = np.repeat(np.arange(n), k)
    cols = order.reshape(-1)
    frame = {
        "map_id": np.asarray(map_ids, dtype=object)[rows],
        "level": level,
        "rank": np.tile(np.arange(1, k + 1), n),
        "term_id": np.asarray(ids, dtype=object)[cols],
        "term": np.asarray(names, dtype=object)[cols],
        "prob": prob[rows, cols],
    }
    for name in ("similarity", "likelihood", "prior", "bayes_factor"):
        frame[name] = extra[name][rows, cols] if name in extra else np.full(n * k, np.nan)
    flags = against_map(frame["bayes_factor"]) if "bayes_factor" in extra else [None] * (n * k)
    frame["against_map"] = pd.array(flags, dtype="boolean")
    frame["hub"] = pd.array(hubs[cols] if hubs is not None else [None] * (n * k), dtype="boolean")
    return pd.DataFrame(frame)
