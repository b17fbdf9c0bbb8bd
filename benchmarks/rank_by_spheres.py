"""Top-3 tasks of nilearn's motor map and four 10 mm spheres under each ``rank_by``.

The spheres (value 1 inside a 10 mm radius, 0 elsewhere, on the MNI152 2 mm grid) sit on
left motor cortex (-38, -22, 56), left DLPFC (-44, 36, 20), left amygdala (-22, -4, -18)
and V1 (0, -90, 4). The five maps are projected once and decoded together under each of
posterior, bayes_factor and likelihood, so hubs are flagged among them (five maps, the
least that :mod:`niclip_ray.decoding.ranking` flags hubs on). Each task is printed with
its posterior, prior and Bayes factor, and ``[against]`` / ``[hub]`` when flagged.

Meaningful only with a trained bundle (the paper's, or a real-scale run); a toy bundle
from :mod:`niclip_ray._testing` has random weights and ranks at random.

Usage: python benchmarks/rank_by_spheres.py --bundle DIR [--atlas-dir DIR] [--top 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
from nilearn.datasets import load_mni152_template, load_sample_motor_activation_image

from niclip_ray.decoding.decoder import Decoder
from niclip_ray.defaults import RANK_BY

#: Sphere centres in MNI millimetres.
SPHERES = {"motor": (-38, -22, 56), "dlpfc": (-44, 36, 20), "amygdala": (-22, -4, -18), "v1": (0, -90, 4)}
RADIUS_MM = 10.0


def sphere_map(centre: tuple[float, float, float], radius_mm: float = RADIUS_MM) -> nib.Nifti1Image:
    """A binary sphere on the MNI152 2 mm grid."""
    template = load_mni152_template(resolution=2)
    ijk = np.indices(template.shape).reshape(3, -1).T
    xyz = nib.affines.apply_affine(template.affine, ijk)
    inside = np.linalg.norm(xyz - np.asarray(centre, float), axis=1) <= radius_mm
    return nib.Nifti1Image(inside.reshape(template.shape).astype(np.float32), template.affine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--atlas-dir", type=Path)
    parser.add_argument("--top", type=int, default=3)
    args = parser.parse_args()
    maps = {"nilearn-motor": load_sample_motor_activation_image(),
            **{f"sphere-{name}": sphere_map(centre) for name, centre in SPHERES.items()}}
    decoder = Decoder(args.bundle, topk=args.top, atlas_dir=args.atlas_dir, hierarchical=False)
    print(f"bundle {args.bundle} ({decoder.describe()['n_terms']['task']} tasks, atlas {decoder.atlas_id}, "
          f"logit scale {decoder.logit_scale:g})")
    betas = np.stack([decoder.project(img, name=name) for name, img in maps.items()])
    for rank_by in RANK_BY:
        frame = decoder.decode_features(betas, list(maps), rank_by=rank_by).astype({"against_map": object, "hub": object})
        print(f"\n## rank_by={rank_by}")
        for map_id, rows in frame.groupby("map_id", sort=False):
            cells = [f"{row.term} (post {row.prob:.3f}, prior {row.prior:.3f}, BF {row.bayes_factor:.2f})"
                     + (" [against]" if row.against_map is True else "") + (" [hub]" if row.hub is True else "")
                     for row in rows.itertuples()]
            print(f"{map_id:18s} " + " | ".join(cells))


if __name__ == "__main__":
    main()
