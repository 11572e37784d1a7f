"""Plain-text tables whose columns line up with CJK names and units (two cells per glyph)."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

__all__ = ["cells", "table"]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, gap: str = "  ") -> list[str]:
    """Lines of a left-aligned table; the last column is not padded."""
    widths = [cells(h) for h in headers]
    for row in rows:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], cells(text))
    lines = []
    for row in [headers, *rows]:
        padded = [text + " " * (widths[i] - cells(text)) for i, text in enumerate(row[:-1])]
        lines.append(gap.join([*padded, row[-1]]).rstrip())
    return lines


def cells(text: str) -> int:
    """Terminal cells ``text`` takes: wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
