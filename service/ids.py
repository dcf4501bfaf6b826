"""Path ids: positive integers written the canonical way, and session ids (token_urlsafe).

Anything else names nothing, and is answered without asking the database.
"""

from __future__ import annotations

import re

_CANONICAL_ID = re.compile(r"[1-9][0-9]{0,18}")
_TOKEN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what secrets.token_urlsafe() writes
MAX_SQL_INTEGER = 2**63 - 1  # SQLite cannot bind a larger integer


def parse_id(raw: str) -> int | None:
    """The id `raw` spells (`7`), or None for `0`, `07`, or beyond SQLite's integers."""
    if not _CANONICAL_ID.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= MAX_SQL_INTEGER else None


def is_token_id(raw: str) -> bool:
    """Whether `raw` could be a session id; anything else (a NUL, say) names nothing."""
    return _TOKEN_ID.fullmatch(raw) is not None
