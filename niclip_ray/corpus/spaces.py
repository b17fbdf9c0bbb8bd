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

    Rows in any other space (MNI, or unknown, which the reference also treats as MNI), and
    Talairach rows with a value that is not a finite number, are left as they are, so that
    validation reports bad values as the source wrote them; ``space_in`` keeps the label.
    """
    from nimare.utils import tal2mni

    coords = coords.copy()
    tal = coords["space_in"].map(is_talairach).to_numpy(dtype=bool)
    if tal.any():
        xyz = coords.loc[tal, ["x", "y", "z"]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float, copy=True)
        finite = np.isfinite(xyz).all(axis=1)
        for axis in "xyz":  # text columns (CSV readers) take the converted floats as objects
            if not pd.api.types.is_float_dtype(coords[axis]):
                coords[axis] = coords[axis].astype(object)
        coords.loc[coords.index[tal][finite], ["x", "y", "z"]] = tal2mni(xyz[finite])
    return coords
