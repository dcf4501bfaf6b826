"""SQL for login throttling: failed attempts per (username, client address) in a window,
and per account (login_account_failures) with the time of the latest failure."""

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

# An account's count starts again with each window, unless it had reached the delay and
# the failures go on: then it carries over, so a guesser who keeps to the delay never
# gets the free failures back (that gave ~2.6 times the guesses SECURITY.md allows),
# while one address (fewer failures a window than are free) still never slows the owner.
RECORD_ACCOUNT_FAILURE = """
INSERT INTO login_account_failures (username, failures, window_started_at, last_failure_at)
VALUES (:username, 1, :now, :now)
ON CONFLICT (username) DO UPDATE SET
    failures = CASE
        WHEN login_account_failures.window_started_at + :window > :now
          OR (login_account_failures.failures >= :free_failures
              AND login_account_failures.last_failure_at + :window > :now)
        THEN login_account_failures.failures + 1 ELSE 1 END,
    window_started_at = CASE WHEN login_account_failures.window_started_at + :window > :now
                             THEN login_account_failures.window_started_at ELSE :now END,
    last_failure_at = :now
"""

SELECT_ACCOUNT = """
SELECT failures, last_failure_at FROM login_account_failures
WHERE username = :username
"""

CLEAR_ACCOUNT = "DELETE FROM login_account_failures WHERE username = :username"

PURGE_EXPIRED_ACCOUNTS = (
    "DELETE FROM login_account_failures WHERE last_failure_at + :window <= :now"
)


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


async def account_seconds_slowed(
    conn: Connection,
    *,
    username: str,
    now: float,
    free_failures: int,
    window: float,
    max_delay: float,
) -> float:
    """How long the account must still wait, under a delay that doubles with each failure.

    The first `free_failures` failures in a window cost nothing; then each one makes the
    account wait 1, 2, 4, ... seconds after it, never more than `max_delay`. A count that
    reached the delay lasts while failures keep coming: until a whole window without one.
    """
    row = await conn.fetch_one(SELECT_ACCOUNT, {"username": username})
    if row is None:
        return 0.0
    failures, last_failure_at = int(row[0]), float(row[1])
    if failures < free_failures or last_failure_at + window <= now:
        return 0.0
    delay = min(2.0 ** min(failures - free_failures, 32), max_delay)
    return max(last_failure_at + delay - now, 0.0)


async def record_account_failure(
    conn: Connection, *, username: str, now: float, window: float, free_failures: int
) -> None:
    """Count one failed login of the account, from whatever address."""
    await conn.execute(
        RECORD_ACCOUNT_FAILURE,
        {"username": username, "now": now, "window": window, "free_failures": free_failures},
    )


async def clear_account_failures(conn: Connection, *, username: str) -> None:
    """A successful login resets the account's count."""
    await conn.execute(CLEAR_ACCOUNT, {"username": username})


async def purge_expired(conn: Connection, *, now: float, window: float) -> None:
    """Forget windows that have passed, so the tables do not grow without end."""
    await conn.execute(PURGE_EXPIRED, {"now": now, "window": window})
    await conn.execute(PURGE_EXPIRED_ACCOUNTS, {"now": now, "window": window})
