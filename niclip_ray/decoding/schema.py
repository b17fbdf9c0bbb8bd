"""The decode contract, defined once: levels, the columns of a decoding result, its Parquet schema.

The decoder, the decode stage, the baselines and the evaluator all read these
(``decode/part-NNNNN.parquet``, listed in ``docs/architecture.md``). One row is one map, level and ranked term.
"""

from __future__ import annotations

import pyarrow as pa

#: Decoding levels, from the most specific.
LEVELS = ("task", "concept", "domain")
#: Per-term numbers; concept and domain rows, and baselines, leave all but ``prob`` empty.
SCORE_COLUMNS = ("prob", "similarity", "likelihood", "prior", "bayes_factor")
#: Flags of a top term (:mod:`niclip_ray.decoding.ranking`): a task's Bayes factor is below 1; a task or concept
#: tops most maps decoded together. Null where a flag does not apply or cannot be known.
FLAG_COLUMNS = ("against_map", "hub")
#: What the evaluator needs of any ranked predictions.
RANKING_COLUMNS = ("map_id", "level", "rank", "term")
#: Scores of decoded maps (:meth:`niclip_ray.decoding.decoder.Decoder.decode_features`), with the atlas they projected on.
RESULT_COLUMNS = ["map_id", "level", "rank", "term_id", "term", *SCORE_COLUMNS, *FLAG_COLUMNS, "atlas_id"]
#: What a decode row keeps of a NeuroVault map (its ids, its metadata's ``name`` and contrast); null for other maps.
COLLECTION_COLUMNS = ("collection_id", "image_id", "name", "contrast")
#: A decode stage part: the result, where each map came from, its atlas, its error (null when none), a
#: warning about its space (no sform/qform, partial overlap with the brain mask; "" if none), and
#: :data:`COLLECTION_COLUMNS` (parts written before them lack these columns).
DECODE_SCHEMA = pa.schema(
    [
        ("map_id", pa.string()),
        ("source_path", pa.string()),
        ("level", pa.string()),
        ("rank", pa.int32()),
        ("term_id", pa.string()),
        ("term", pa.string()),
        *[(name, pa.float64()) for name in SCORE_COLUMNS],
        *[(name, pa.bool_()) for name in FLAG_COLUMNS],
        ("atlas_id", pa.string()),
        ("error", pa.string()),
        ("warning", pa.string()),
        *[(name, pa.string()) for name in COLLECTION_COLUMNS],
    ]
)
#: Written CSVs keep 6 significant digits (float32 features carry no more).
CSV_FLOAT_FORMAT = "%.6g"
#: A baseline's rows: the decode columns a baseline has, its own score, and its name.
BASELINE_COLUMNS = ["map_id", "source_path", "level", "rank", "term_id", "term", *SCORE_COLUMNS, "score", "backend",
                    "atlas_id", "error"]
