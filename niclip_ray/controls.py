"""Control characters in identifiers: found, and escaped before they are printed or stored.

A NUL byte or a terminal escape in a study id from a source file would otherwise end up in
the corpus tables and, raw, on a terminal. An id holding one is refused (the corpus checks,
:mod:`niclip_ray.corpus.schema`), and messages show such characters escaped as Python's
``repr`` does (``2\\x0022``).
"""

from __future__ import annotations

import unicodedata

#: Unicode categories refused in ids: control characters (NUL, ESC, newline, DEL, C1),
#: invisible format characters (zero-width, bidirectional overrides), and line and
#: paragraph separators.
CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def control_characters(text: str) -> list[str]:
    """The distinct characters of :data:`CONTROL_CATEGORIES` in ``text``, in order of appearance."""
    if text.isprintable():  # fast path: every refused character is also not printable
        return []
    return list(dict.fromkeys(c for c in text if unicodedata.category(c) in CONTROL_CATEGORIES))


def escape_controls(text: str) -> str:
    """``text`` with each character of :data:`CONTROL_CATEGORIES` escaped as ``repr`` shows it (``\\x00``)."""
    found = control_characters(text)
    for char in found:
        text = text.replace(char, repr(char)[1:-1])
    return text
