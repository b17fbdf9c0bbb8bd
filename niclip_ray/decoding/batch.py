"""Decode manifest items one by one, a bad map never stopping the others: the rows of the decode contract.

:meth:`Decoder.transform <niclip_ray.decoding.decoder.Decoder.transform>` and the decode
stage (:mod:`niclip_ray.pipelines.decode`) both decode through :func:`decode_maps`. Every
map is checked (:func:`~niclip_ray.decoding.map_files.check_map`) and projected on its own;
the maps that project are scored together, vectorised (:meth:`Decoder.decode_features
<niclip_ray.decoding.decoder.Decoder.decode_features>`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from niclip_ray.decoding.decoder import nonfinite_maps
from niclip_ray.decoding.map_files import check_map, load_item
from niclip_ray.decoding.schema import COLLECTION_COLUMNS, DECODE_SCHEMA
from niclip_ray.errors import InputError, ParameterError

if TYPE_CHECKING:
    from niclip_ray.decoding.decoder import Decoder

#: What a bad map gives: ``rows``, one error row and the others decoded; ``raise``, an :class:`InputError`.
ERROR_MODES = ("rows", "raise")


def decode_maps(
    decoder: Decoder,
    items: list[dict],
    *,
    strict: bool = False,
    errors: str = "rows",
    on_item: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """Decode manifest items with a ready decoder.

    Each map's header is checked first: its warning goes to every row of the map, or, when
    ``strict``, becomes its error. A map whose scores are not numbers
    (:func:`~niclip_ray.decoding.decoder.nonfinite_maps`) is an error too, never a result.
    The item's ``input_warning`` (unreadable NeuroVault metadata) is added to its rows'
    warning.

    Parameters
    ----------
    decoder : Decoder
    items : list of dict
        Items of :func:`~niclip_ray.decoding.map_files.collect_maps` or
        :func:`~niclip_ray.decoding.map_files.image_items`, with distinct ``map_id``.
    strict : bool
        Refuse maps without a spatial transform or only partly over the brain mask.
    errors : {"rows", "raise"}
        ``rows``: a map that fails gets one row with its ``error`` and nulls elsewhere.
        ``raise``: the first map that fails raises.
    on_item : callable, optional
        Called after each map is projected or has failed (for progress).

    Returns
    -------
    DataFrame
        The columns of :data:`~niclip_ray.decoding.schema.DECODE_SCHEMA`: the decoded maps'
        rows in item order (level by level), then one row per failed map; ``rank`` is Int32.

    Raises
    ------
    InputError
        With ``errors="raise"``, for the first map that fails; the message names it.
    ParameterError
        When ``errors`` is not one of :data:`ERROR_MODES`.
    """
    if errors not in ERROR_MODES:
        raise ParameterError("errors", f"must be one of {', '.join(ERROR_MODES)}, got {errors!r}")
    betas, good, failed, warnings = [], [], {}, {}
    for item in items:
        map_id = item["map_id"]
        try:
            found = [item.get("input_warning", ""), check_map(item, decoder.projector.grid, strict)]
            warnings[map_id] = "; ".join(w for w in found if w)
            label = f"{map_id} ({item['source_path']})" if item.get("source_path") else map_id
            betas.append(decoder.project(load_item(item), name=label))
            good.append(map_id)
        except Exception as exc:  # an unexpected per-map failure must not take the others down
            if errors == "raise":
                raise
            failed[map_id] = str(exc) if isinstance(exc, InputError) else f"map {map_id}: {type(exc).__name__}: {exc}"
        if on_item is not None:
            on_item()
    frame = decoder.decode_features(np.stack(betas) if betas else np.zeros((0, 1), np.float32), good)
    nonfinite = nonfinite_maps(frame)
    if nonfinite and errors == "raise":
        raise InputError(next(iter(nonfinite.values())))
    failed.update(nonfinite)
    about = pd.DataFrame(
        {
            "map_id": [i["map_id"] for i in items],
            "source_path": [i.get("source_path") for i in items],
            "error": [failed.get(i["map_id"]) for i in items],
            "warning": ["" if i["map_id"] in failed else warnings[i["map_id"]] for i in items],
            **{column: [i.get(column) for i in items] for column in COLLECTION_COLUMNS},
        },
        dtype=object,
    )
    decoded = frame[~frame["map_id"].isin(failed)]
    errored = about.loc[about["error"].notna(), ["map_id"]]
    rows = pd.concat([decoded, errored], ignore_index=True) if len(errored) else decoded.reset_index(drop=True)
    rows = rows.merge(about, on="map_id", how="left")
    rows["rank"] = rows["rank"].astype("Int32")
    return rows[DECODE_SCHEMA.names]
