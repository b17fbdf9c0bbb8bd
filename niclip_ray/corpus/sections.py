"""Text sections of a study: a column of ``studies.parquet``, or the title with its keywords.

``title+keywords`` is the title followed by the first :data:`KEYWORDS_IN_TEXT` terms of the
study's NeuroQuery keyword document (its abstract's terms by tf-idf), as
``"TITLE. Keywords: a, b, c."``; a study without keywords keeps its title alone.
"""

from __future__ import annotations

import pandas as pd

from niclip_ray.errors import ParameterError

COLUMN_SECTIONS = ("abstract", "body", "title", "keywords")
COMBINED_SECTIONS = ("title+keywords",)
SECTIONS = COLUMN_SECTIONS + COMBINED_SECTIONS
#: Keywords appended to a title: the top terms carry the abstract's topic, and the
#: sentence stays within one window of a small encoder (about 70 tokens).
KEYWORDS_IN_TEXT = 20


def title_with_keywords(title: str, keywords: str, n: int = KEYWORDS_IN_TEXT) -> str:
    """``"TITLE. Keywords: k1, ..., kn."`` (the title alone without keywords)."""
    title = str(title or "").strip().rstrip(".")
    terms = [term.strip() for term in str(keywords or "").split(",") if term.strip()][:n]
    if not terms:
        return f"{title}." if title else ""
    return f"{title}. Keywords: {', '.join(terms)}." if title else f"Keywords: {', '.join(terms)}."


def section_texts(studies: pd.DataFrame, section: str) -> pd.Series:
    """One value per study of ``section`` (raw, as stored, for a column section).

    Raises
    ------
    ParameterError
        An unknown section.
    """
    if section not in SECTIONS:
        raise ParameterError("section", f"must be one of {', '.join(SECTIONS)}, got {section!r}")
    if section in COLUMN_SECTIONS:
        return studies[section] if section in studies else pd.Series("", index=studies.index)
    title = studies["title"] if "title" in studies else pd.Series("", index=studies.index)
    keywords = studies["keywords"] if "keywords" in studies else pd.Series("", index=studies.index)
    return pd.Series([title_with_keywords(t, k) for t, k in zip(title.fillna(""), keywords.fillna(""))],
                     index=studies.index)
