"""Path ids: positive integers written the canonical way; anything else names nothing."""

from __future__ import annotations

import re

_CANONICAL_ID = re.compile(r"[1-9][0-9]{0,18}")
MAX_SQL_INTEGER = 2**63 - 1  # SQLite cannot bind a larger integer


def parse_id(raw: str) -> int | None:
    """The id `raw` spells (`7`), or None for `0`, `07`, or beyond SQLite's integers."""
    if not _CANONICAL_ID.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= MAX_SQL_INTEGER else None
