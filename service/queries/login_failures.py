"""SQL for login throttling: failed attempts per (username, client address) in a window."""

from __future__ import annotations

from service.db import Connection

# A failure outside the current window starts a new window; inside it, counts up.
RECORD_FAILURE = """
INSERT INTO login_failures (username, client, failures, window_started_at)
VALUES (:username, :client, 1, :now)
ON CONFLICT (username, client) DO UPDATE SET
    failures = CASE WHEN login_failures.window_started_at + :window > :now
                    THEN login_failures.failures + 1 ELSE 1 END,
    window_started_at = CASE WHEN login_failures.window_started_at + :window > :now
                             THEN login_failures.window_started_at ELSE :now END
"""

SELECT_WINDOW = """
SELECT failures, window_started_at FROM login_failures
WHERE username = :username AND client = :client
"""

CLEAR_FAILURES = "DELETE FROM login_failures WHERE username = :username AND client = :client"

PURGE_EXPIRED = "DELETE FROM login_failures WHERE window_started_at + :window <= :now"


async def seconds_locked(
    conn: Connection,
    *,
    username: str,
    client: str,
    now: float,
    max_failures: int,
    window: float,
) -> float:
    """How long this pair must still wait (0 when it may try)."""
    row = await conn.fetch_one(SELECT_WINDOW, {"username": username, "client": client})
    if row is None:
        return 0.0
    failures, started_at = row[0], row[1]
    remaining = started_at + window - now
    return remaining if failures >= max_failures and remaining > 0 else 0.0


async def record_failure(
    conn: Connection, *, username: str, client: str, now: float, window: float
) -> None:
    """Count one failed attempt in the pair's current window."""
    await conn.execute(
        RECORD_FAILURE, {"username": username, "client": client, "now": now, "window": window}
    )


async def clear_failures(conn: Connection, *, username: str, client: str) -> None:
    """A successful login resets the pair's count."""
    await conn.execute(CLEAR_FAILURES, {"username": username, "client": client})


async def purge_expired(conn: Connection, *, now: float, window: float) -> None:
    """Forget windows that have passed, so the table does not grow without end."""
    await conn.execute(PURGE_EXPIRED, {"now": now, "window": window})
