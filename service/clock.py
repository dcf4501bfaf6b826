"""Timestamps as the API writes them: ISO 8601, UTC, with an explicit offset."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    """Now, to the second, such as 2026-11-27T10:00:00+00:00."""
    return datetime.now(UTC).isoformat(timespec="seconds")
