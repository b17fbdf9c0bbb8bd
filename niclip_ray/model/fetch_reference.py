"""The paper's model in one step: download its OSF files, verify them, import them into a bundle.

:func:`fetch_reference` reads the metadata OSF publishes for the files of node ``dsj56``
(size and sha256, see :mod:`niclip_ray.model.osf`), downloads them resumably
(:mod:`niclip_ray.model.download`), records the metadata it verified against in
``SOURCES.json`` beside them, fetches the real DiFuMo through nilearn, and imports the
whole as the bundle :func:`niclip_ray.home.default_bundle_dir`, which ``niclip-ray decode`` uses when no
``--model`` is given. A rerun whose files still match ``SOURCES.json`` needs no network.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from niclip_ray.atomic import make_dir, write_json
from niclip_ray.errors import InputError
from niclip_ray.home import default_bundle_dir, niclip_home
from niclip_ray.model.download import OnBytes, fetch_file, is_verified
from niclip_ray.model.osf import OsfUnreachable, RemoteFile, download_url, file_info, files_base, folder_files

NODE = "dsj56"
#: The Cognitive Atlas folder of the node, and where it goes in the download directory.
ATLAS_FOLDER, ATLAS_DEST = "data/cognitive_atlas", "cognitive_atlas"
#: ``role: (OSF id, file name)`` of the paper's decoding files (README of NBCLab/brain-decoder).
FILES = {
    "model": ("u3cxh", "model-clip_section-body_embedding-BrainGPT-7B-v0.2_best.pth"),
    "vocabulary": ("8m2fz", "vocabulary-cogatlasred_task.txt"),
    "vocabulary_emb": ("nza7b", "vocabulary-cogatlasred_task-combined_embedding-BrainGPT-7B-v0.2.npy"),
    "vocabulary_prior": ("v82za", "vocabulary-cogatlasred_task-combined_embedding-BrainGPT-7B-v0.2_section-body_prior.npy"),
    "mask": ("jzvry", "MNI152_2x2x2_brainmask.nii.gz"),
}
SOURCES = "SOURCES.json"
#: Decoding scale of the imported bundle (the paper's decoding jobs use 20).
LOGIT_SCALE = 20.0


def default_download_dir() -> Path:
    """Where the OSF files go by default: ``<home>/downloads/osf-dsj56`` (see :mod:`niclip_ray.home`)."""
    return niclip_home() / "downloads" / f"osf-{NODE}"


def manual_steps(out_dir: Path) -> str:
    """What to download by hand into ``out_dir`` when OSF cannot be reached, in one line."""
    files = "; ".join(f"{download_url(osf_id)} as {name}" for osf_id, name in FILES.values())
    return (f"download by hand into {out_dir}: {files}; the folder {ATLAS_FOLDER} of "
            f"{files_base()}/{NODE}/files/osfstorage as {ATLAS_DEST}/; then run `niclip-ray model import-reference` "
            "on them (README, 'Decode your own map')")


def remote_files() -> list[RemoteFile]:
    """The metadata OSF publishes for every file to download (raises :class:`OsfUnreachable` offline)."""
    return [file_info(osf_id, name) for osf_id, name in FILES.values()] + folder_files(NODE, ATLAS_FOLDER, ATLAS_DEST)


def sources_record(files: list[RemoteFile]) -> dict:
    """What ``SOURCES.json`` and the bundle's ``config.source.osf`` keep: the metadata verified against."""
    return {"node": NODE, "checksums": "size and sha256 as published by OSF (API v2)",
            "files": [f.as_json() for f in files]}


def verified_sources(out_dir: Path) -> list[RemoteFile] | None:
    """The files of ``out_dir/SOURCES.json`` when every one of them is on disk and still matches."""
    try:
        entries = json.loads((out_dir / SOURCES).read_text())["files"]
        files = [RemoteFile(**entry) for entry in entries]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    names = {f.path for f in files}
    complete = {name for _, name in FILES.values()} <= names and any(p.startswith(ATLAS_DEST + "/") for p in names)
    ok = complete and all(is_verified(out_dir / f.path, f.size, f.sha256) for f in files)
    return files if ok else None


def download_reference(out_dir: str | os.PathLike, on_bytes: OnBytes | None = None,
                       note: Callable[[str], None] = lambda line: None) -> list[RemoteFile]:
    """Download the paper's files into ``out_dir`` and verify each against OSF's size and sha256.

    Files already verified (by ``SOURCES.json``, or against fresh metadata) are kept as
    they are; partial downloads resume. ``SOURCES.json`` is written once all files match.

    Returns
    -------
    list of RemoteFile
        The metadata the files were verified against.

    Raises
    ------
    OsfUnreachable
        OSF cannot be reached; the message says what to download by hand and where.
    InputError
        A file is missing on OSF (404, naming its id), stopped short, or does not match.
    """
    out_dir = make_dir(Path(out_dir).expanduser(), "out_dir")
    known = verified_sources(out_dir)
    if known is not None:
        note(f"{len(known)} files in {out_dir} match {SOURCES}; nothing to download")
        return known
    try:
        files = remote_files()
        for remote in files:
            if not fetch_file(remote, out_dir / remote.path, on_bytes):
                note(f"{remote.path}: already verified")
    except OsfUnreachable as exc:
        raise OsfUnreachable(f"{exc} (offline?); {manual_steps(out_dir)}") from exc
    write_json(out_dir / SOURCES, sources_record(files), indent=1)
    return files


def import_reference(out_dir: Path, files: list[RemoteFile], atlas_dir: Path, bundle_dir: Path) -> tuple[Path, bool]:
    """Import the verified files of ``out_dir`` into ``bundle_dir`` (the real DiFuMo fetched into ``atlas_dir``).

    Returns
    -------
    (Path, bool)
        The bundle, and whether it was written now (False: it already came from these files).
    """
    from niclip_ray.atlas.difumo import load_atlas
    from niclip_ray.model.bundle import save_bundle
    from niclip_ray.model.checkpoint import checkpoint_dims, load_checkpoint
    from niclip_ray.model.reference import bundle_from_reference

    sources = sources_record(files)
    if _imported_from(bundle_dir) == sources:
        return bundle_dir, False
    paths = {role: out_dir / name for role, (_, name) in FILES.items()}
    dim = checkpoint_dims(load_checkpoint(paths["model"])).image_dim
    load_atlas(dim, data_dir=make_dir(atlas_dir, "atlas_dir"), allow_standin=False, download=True)
    bundle = bundle_from_reference(paths["model"], paths["vocabulary"], paths["vocabulary_emb"],
                                   paths["vocabulary_prior"], cognitiveatlas=out_dir / ATLAS_DEST, reduced=True,
                                   dim=dim, mask=paths["mask"], logit_scale=LOGIT_SCALE, atlas_dir=atlas_dir)
    config = {**bundle.config, "source": {**bundle.config["source"], "osf": sources}}
    path = save_bundle(bundle_dir, bundle.state_dict, config, bundle.vocabulary, bundle.ontology, mask_file=paths["mask"])
    return path, True


def _imported_from(bundle_dir: Path) -> dict | None:
    """The OSF metadata a verified bundle at ``bundle_dir`` was imported from (None: no such bundle)."""
    from niclip_ray.model.bundle import MANIFEST, load_bundle

    if not (bundle_dir / MANIFEST).is_file():
        return None
    try:
        return load_bundle(bundle_dir).config.get("source", {}).get("osf")
    except InputError:
        return None  # damaged: imported again


def fetch_reference(out_dir: str | os.PathLike | None = None, atlas_dir: str | os.PathLike | None = None,
                    on_bytes: OnBytes | None = None,
                    note: Callable[[str], None] = lambda line: None) -> tuple[Path, bool]:
    """Download, verify and import the paper's model as the default bundle.

    The checksums are those OSF publishes for each file (API v2 ``extra.hashes.sha256``
    and ``size``); ``SOURCES.json`` in ``out_dir`` and the bundle's ``config.source.osf``
    keep them.

    Parameters
    ----------
    out_dir : path, optional
        Download directory (default :func:`default_download_dir`).
    atlas_dir : path, optional
        nilearn data directory for the real DiFuMo (default: the first one nilearn and
        ``decode`` search, ``NILEARN_DATA`` or ``~/nilearn_data``).
    on_bytes : callable, optional
        Download progress, ``on_bytes(path, done, total)``.
    note : callable, optional
        Receives one-line notes (files already verified).

    Returns
    -------
    (Path, bool)
        The bundle (:func:`niclip_ray.home.default_bundle_dir`) and whether it was written now.

    Raises
    ------
    OsfUnreachable, InputError, ConfigError
        See :func:`download_reference`; ConfigError also when DiFuMo cannot be downloaded.
    """
    from niclip_ray.atlas.cache import default_data_dirs

    out_dir = Path(out_dir).expanduser() if out_dir is not None else default_download_dir()
    atlas_dir = Path(atlas_dir).expanduser() if atlas_dir is not None else default_data_dirs()[0]
    files = download_reference(out_dir, on_bytes, note)
    return import_reference(out_dir, files, atlas_dir, default_bundle_dir())
