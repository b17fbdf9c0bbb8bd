"""MKDA chi-square association maps of every term from one sparse activation matrix.

NiMARE's ``CorrelationDecoder(meta_estimator=MKDAChi2())`` runs one meta-analysis per term:
the studies that mention the term against the others. Its ``z_desc-association`` map
(NiMARE 0.22.1, ``MKDAChi2._fit`` and ``stats.two_way_counts``) is, at each voxel, Pearson's
chi-square test (no continuity correction) of the 2x2 table "study mentions the term" x
"the study's MKDA map covers the voxel", its square root signed by p(A|F) - p(A|U).

With n studies, k of them mentioning the term, N covering the voxel and a of those
mentioning the term, the table is ``[[a, N - a], [k - a, n - k - N + a]]`` and

    chi2 = n (a n - N k)^2 / (N (n - N) k (n - k)),
    z = (a n - N k) * sqrt(n / (k (n - k))) / sqrt(N (n - N)),

since p(A|F) - p(A|U) = (a n - N k) / (k (n - k)) carries the sign of ``a n - N k``. Where
no study or every study covers the voxel (N = 0 or N = n) NiMARE sets chi2 to 2, but both
conditional probabilities are equal there, the sign is 0 and so is z. z is linear in ``a``, the
only per-term quantity, so one pass over the mentioning studies' voxel lists gives a
term's map; terms mentioned by more than half of the studies are counted over the
others (``a = N - count``). No prior, FDR or permutation enters this map.

The decoder's score for a map is NiMARE's ``stats.pearson``: the Pearson correlation of the
map's masked values with each term map.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import sparse

#: Voxel entries gathered per ``bincount`` (about 50 MB of temporaries).
BATCH_ENTRIES = 1 << 22
#: Studies whose voxel indices are joined into one block while the matrix is built.
STUDIES_PER_BLOCK = 1024


def activation_matrix(voxels: Iterable[np.ndarray], n_voxels: int) -> sparse.csr_array:
    """Studies' binary MKDA maps as one sparse matrix.

    Parameters
    ----------
    voxels : iterable of int arrays, one per study
        Each study's masked-voxel indices, sorted and unique, as
        :func:`niclip_ray.features.mkda.study_voxels` returns them. A generator keeps
        one study's int64 indices in memory at a time (they are stored as int32).
    n_voxels : int
        Voxels in the mask.

    Returns
    -------
    (n_studies, n_voxels) scipy.sparse.csr_array of int8
        1 where a study's spheres cover a voxel.
    """
    # studies are joined in blocks: thousands of small arrays kept to the end would leave
    # their freed heap memory resident next to the matrix
    blocks, block, lengths = [], [np.zeros(0, np.int32)], []
    for study in voxels:
        block.append(np.asarray(study, dtype=np.int32))
        lengths.append(len(block[-1]))
        if len(block) > STUDIES_PER_BLOCK:
            blocks.append(np.concatenate(block))
            block = [np.zeros(0, np.int32)]
    indices = np.concatenate([*blocks, np.concatenate(block)])
    del blocks, block
    indptr = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    if indptr[-1] <= np.iinfo(np.int32).max:  # int64 pointers would make scipy copy the indices to int64
        indptr = indptr.astype(np.int32)
    return sparse.csr_array((np.ones(len(indices), dtype=np.int8), indices, indptr), shape=(len(indptr) - 1, n_voxels))


def _check_activations(activations) -> sparse.csr_array:
    activations = sparse.csr_array(activations)
    activations.sum_duplicates()
    if activations.nnz and not activations.data.min() == activations.data.max() == 1:
        raise ValueError("the activation matrix must be binary (every stored value 1)")
    return activations


def _covering_counts(activations: sparse.csr_array, rows: np.ndarray) -> np.ndarray:
    """Per voxel, how many of the studies ``rows`` cover it (int64, length n_voxels)."""
    n_voxels = activations.shape[1]
    counts = np.zeros(n_voxels, dtype=np.int64)
    if not len(rows):
        return counts
    ends = np.cumsum(np.diff(activations.indptr)[rows])
    batch_of_row = np.maximum(ends - 1, 0) // BATCH_ENTRIES
    for batch in np.split(rows, np.flatnonzero(np.diff(batch_of_row)) + 1):
        counts += np.bincount(activations[batch].indices, minlength=n_voxels)
    return counts


def association_z(activations, labels: np.ndarray) -> np.ndarray:
    """Every term's MKDAChi2 ``z_desc-association`` map.

    Parameters
    ----------
    activations : (n_studies, n_voxels) scipy sparse matrix
        Binary MKDA maps of the studies (:func:`activation_matrix`).
    labels : (n_terms, n_studies) bool array
        Whether each study mentions each term. Every term needs at least one study with and
        one without it, as NiMARE's decoder requires.

    Returns
    -------
    (n_terms, n_voxels) float32 array
        The z maps, as NiMARE stores them (computed in float64, kept in float32).

    Raises
    ------
    ValueError
        Mismatched shapes, a non-binary activation matrix, or a term mentioned by all or
        by none of the studies.
    """
    activations = _check_activations(activations)
    labels = np.asarray(labels, dtype=bool)
    n_studies, n_voxels = activations.shape
    if labels.ndim != 2 or labels.shape[1] != n_studies:
        raise ValueError(f"labels must be (n_terms, {n_studies}), got shape {labels.shape}")
    mentions = labels.sum(axis=1)
    degenerate = np.flatnonzero((mentions == 0) | (mentions == n_studies))
    if len(degenerate):
        raise ValueError(f"term(s) {degenerate[:10].tolist()} are mentioned by all or by none of the studies")

    covering = _covering_counts(activations, np.arange(n_studies))
    spread = (covering * (n_studies - covering)).astype(np.float64)
    with np.errstate(divide="ignore"):
        voxel_scale = np.where(spread > 0, 1.0 / np.sqrt(spread), 0.0)
    maps = np.empty((len(labels), n_voxels), dtype=np.float32)
    for term, (selected, k) in enumerate(zip(labels, mentions)):
        if 2 * k <= n_studies:
            active = _covering_counts(activations, np.flatnonzero(selected))
        else:
            active = covering - _covering_counts(activations, np.flatnonzero(~selected))
        term_scale = np.sqrt(n_studies / (float(k) * float(n_studies - k)))
        maps[term] = (active * n_studies - covering * int(k)) * (voxel_scale * term_scale)
    return maps


def map_moments(maps: np.ndarray, chunk_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Mean and centred Euclidean norm of each map, in float64, for :func:`correlate`.

    Parameters
    ----------
    maps : (n_maps, n_voxels) float array
    chunk_size : int
        Rows converted to float64 at a time.

    Returns
    -------
    means, norms : (n_maps,) float64 arrays
    """
    means = np.empty(len(maps))
    norms = np.empty(len(maps))
    for start in range(0, len(maps), chunk_size):
        block = np.asarray(maps[start : start + chunk_size], dtype=np.float64)
        means[start : start + len(block)] = block.mean(axis=1)
        block -= means[start : start + len(block), None]
        norms[start : start + len(block)] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return means, norms


def correlate(
    values: np.ndarray, maps: np.ndarray, moments: tuple[np.ndarray, np.ndarray], chunk_size: int = 32
) -> np.ndarray:
    """Pearson correlation of one masked map with each term map (NiMARE's ``stats.pearson``).

    Parameters
    ----------
    values : (n_voxels,) float array
        The map's values in the mask.
    maps : (n_terms, n_voxels) float array
        Term maps (float32 is fine: the products are taken in float64).
    moments : tuple of two (n_terms,) float64 arrays
        :func:`map_moments` of ``maps``.
    chunk_size : int
        Term maps converted to float64 at a time.

    Returns
    -------
    (n_terms,) float64 array
        NaN where the map or a term map is constant.
    """
    means, norms = moments
    values = np.asarray(values, dtype=np.float64)
    centred = values - values.mean()
    # (term - mean) . centred, without a centred copy of the term maps
    cross = np.empty(len(maps))
    for start in range(0, len(maps), chunk_size):
        block = np.asarray(maps[start : start + chunk_size], dtype=np.float64)
        cross[start : start + len(block)] = block @ centred
    cross -= means * centred.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return cross / (norms * np.sqrt(centred @ centred))
