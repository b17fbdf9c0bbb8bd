"""Parameter descriptions shared by many docstrings, filled in with :func:`fill_doc`.

As in nilearn's ``_utils/docs.py``: a docstring writes ``%(atlas_dir)s`` where the
parameter's entry goes, and the decorator substitutes the text below (name, type and
description, indented for a numpydoc ``Parameters`` section).
"""

from __future__ import annotations

import textwrap

docdict = {
    "corpus_dir": """corpus_dir : path
    Corpus directory written by ``niclip-ray corpus ingest`` (``studies.parquet``,
    ``coordinates.parquet``, ``errors.parquet``).""",
    "atlas_dir": """atlas_dir : path, optional
    nilearn data directory holding ``difumo_atlases/`` (the real DiFuMo or a stand-in);
    default: nilearn's own data directories.""",
    "dim": """dim : int
    DiFuMo components: 64, 128, 256, 512 or 1024.""",
    "shard_size": """shard_size : int
    Items (studies or maps) per ``part-NNNNN.parquet`` file, the unit of resumption.""",
    "num_actors": """num_actors : int, optional
    Actors of the stage's pool (default: one per CPU share, capped by the pending shards).""",
    "on_items": """on_items : callable, optional
    Progress callback ``on_items(n, total)``: ``n`` more of the stage's ``total`` items
    finished (first, when resuming, those of the shards finished earlier).""",
    "stage_out_dir": """out_dir : path
    Stage directory for ``part-NNNNN.parquet`` files; a rerun resumes it.""",
    "vocabulary_tasks": """tasks : DataFrame
    ``task_id, name, definition`` in vocabulary order (V rows).""",
    "seed": """seed : int
    Seed of every random draw this call makes; the same seed gives the same result.""",
}


def fill_doc(obj):
    """Substitute ``%(name)s`` placeholders of ``obj.__doc__`` with :data:`docdict` entries.

    Each entry is indented to the placeholder's column, so it can sit inside a numpydoc
    ``Parameters`` section. An unknown name raises ``KeyError`` at import time.
    """
    doc = obj.__doc__
    if not doc:
        return obj
    lines = []
    for line in doc.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("%(") and stripped.endswith(")s") and stripped.count("%(") == 1:
            indent = line[: len(line) - len(stripped)]
            lines.append(textwrap.indent(docdict[stripped[2:-2]], indent))
        else:
            lines.append(line)
    obj.__doc__ = "\n".join(lines)
    return obj
