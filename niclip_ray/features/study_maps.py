"""Each study's MKDA map written as a NIfTI image, so it can be decoded like any map."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from niclip_ray.atlas.mask import load_brain_mask
from niclip_ray.atomic import replacing
from niclip_ray.corpus import load_corpus
from niclip_ray.features.mkda import study_map


def write_study_maps(corpus_dir: Path, study_ids: list[str], out_dir: Path) -> dict[str, Path]:
    """Write each study's MKDA map (10 mm binary spheres on the 2 mm MNI grid) as NIfTI."""
    out_dir.mkdir(parents=True, exist_ok=True)
    mask = load_brain_mask()
    inside = np.asarray(mask.dataobj).astype(bool)
    coords = load_corpus(corpus_dir).coordinates.groupby("study_id")
    paths = {}
    for sid in study_ids:
        path = out_dir / f"study-{sid}.nii.gz"
        if not path.is_file():
            indices, values = study_map(coords.get_group(sid)[["x", "y", "z"]].to_numpy(float), mask)
            flat = np.zeros(int(inside.sum()), dtype=np.float32)
            flat[indices] = values
            volume = np.zeros(inside.shape, dtype=np.float32)
            volume[inside] = flat
            with replacing(path) as tmp:
                nib.save(nib.Nifti1Image(volume, mask.affine), tmp)
        paths[f"study-{sid}"] = path
    return paths
