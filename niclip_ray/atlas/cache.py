"""Find DiFuMo atlases already on disk, in nilearn's cache layout.

``fetch_atlas_difumo(dimension=N, data_dir=D)`` loads
``D/difumo_atlases/{N}/2mm/maps.nii.gz`` without touching the network when it exists.
A stand-in atlas built by niclip-ray says so in ``D/difumo_atlases/README.md``; test
atlases also declare an ``atlas id:`` of their own there, so that artifacts built on them
can never be taken for the stand-in's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DIFUMO_DIMENSIONS = (64, 128, 256, 512, 1024)
STANDIN_MARKER = "niclip-ray stand-in"


@dataclass(frozen=True)
class AtlasCache:
    """One DiFuMo dimension found on disk."""

    data_dir: Path
    dim: int
    standin: bool
    seed: int | None = None  # of a stand-in, from its README
    declared_id: str | None = None  # a test atlas's own id, from its README

    @property
    def atlas_id(self) -> str:
        """Identifier recorded in every artifact built from this atlas."""
        if self.declared_id:
            return self.declared_id
        atlas_id = f"difumo{self.dim}-2mm" + ("-standin" if self.standin else "")
        return atlas_id + (f"-seed{self.seed}" if self.standin and self.seed is not None else "")


def default_data_dirs() -> list[Path]:
    """Where nilearn looks for its data: ``NILEARN_DATA``, ``NILEARN_SHARED_DATA``, ``~/nilearn_data``."""
    dirs = [os.environ.get("NILEARN_DATA"), os.environ.get("NILEARN_SHARED_DATA"), str(Path.home() / "nilearn_data")]
    return [Path(d).expanduser() for d in dirs if d]


def find_difumo(data_dirs: list[Path] | None = None) -> list[AtlasCache]:
    """List the DiFuMo 2 mm atlases present under ``data_dirs`` (default: nilearn's)."""
    found = []
    for data_dir in data_dirs if data_dirs is not None else default_data_dirs():
        root = Path(data_dir) / "difumo_atlases"
        readme = root / "README.md"
        standin = readme.is_file() and STANDIN_MARKER in readme.read_text(errors="replace")
        seed = standin_seed(readme) if standin else None
        declared = _readme_field(readme, "atlas id") if standin else None
        for dim in DIFUMO_DIMENSIONS:
            if (root / str(dim) / "2mm" / "maps.nii.gz").is_file():
                found.append(AtlasCache(Path(data_dir), dim, standin, seed, declared))
    return found


def standin_seed(readme: Path) -> int | None:
    """The ``seed: N`` line of a stand-in's README, or None."""
    seed = _readme_field(readme, "seed")
    return int(seed) if seed is not None and seed.isdigit() else None


def _readme_field(readme: Path, name: str) -> str | None:
    for line in readme.read_text(errors="replace").splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    return None


#: Bumped whenever the stand-in recipe changes, so cached builds are never stale.
STANDIN_VERSION = 2


def atlas_cache_root() -> Path:
    """Root of niclip-ray's atlas caches: ``$NICLIP_ATLAS_CACHE`` or ``~/.cache/niclip-ray/atlases``."""
    return Path(os.environ.get("NICLIP_ATLAS_CACHE", Path.home() / ".cache" / "niclip-ray" / "atlases")).expanduser()


def default_standin_dir(seed: int = 0) -> Path:
    """Where built stand-ins are cached, under :func:`atlas_cache_root`."""
    return atlas_cache_root() / f"standin-v{STANDIN_VERSION}-seed{seed}"
