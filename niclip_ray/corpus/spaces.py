"""Stereotactic spaces: which source labels mean Talairach, and the TAL -> MNI transform."""

from __future__ import annotations

import numpy as np
import pandas as pd

TALAIRACH_LABELS = {"tal", "talairach", "tal_2mm"}


def is_talairach(space: str) -> bool:
    """True for the labels NiMARE and NeuroStore use for Talairach space."""
    return str(space).strip().lower() in TALAIRACH_LABELS


def to_mni(coords: pd.DataFrame) -> pd.DataFrame:
    """Convert Talairach rows of ``coords`` (by ``space_in``) to MNI with NiMARE's transform.

    Rows in any other space (MNI, or unknown, which the reference also treats as MNI) are
    left as they are; ``space_in`` keeps the original label.
    """
    from nimare.utils import tal2mni

    coords = coords.copy()
    for axis in "xyz":  # non-numeric values become NaN here and are reported by validation
        coords[axis] = pd.to_numeric(coords[axis], errors="coerce").astype(float)
    tal = coords["space_in"].map(is_talairach).to_numpy(dtype=bool)
    if tal.any():
        xyz = np.array(coords.loc[tal, ["x", "y", "z"]], dtype=float)
        finite = np.isfinite(xyz).all(axis=1)
        xyz[finite] = tal2mni(xyz[finite])
        coords.loc[tal, ["x", "y", "z"]] = xyz
    return coords
