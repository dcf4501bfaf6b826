"""SQL for the login's second step: only the SHA-256 of each mfa_token is stored.

A challenge dies after `max_failures` wrong codes, at its expiry, or when spent; each of
these is a conditional statement, so it holds under READ COMMITTED without a lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.db import Connection


@dataclass(frozen=True, slots=True)
class Challenge:
    user_id: int
    token_version: int  # the user's, when issued
    password_fingerprint: str  # of his password hash, when issued
    failures: int
    expires_at: float


INSERT_CHALLENGE = """
INSERT INTO mfa_challenges (token_hash, user_id, token_version, password_fingerprint,
                            created_at, expires_at)
VALUES (:token_hash, :user_id, :token_version, :password_fingerprint, :now, :expires_at)
"""

SELECT_CHALLENGE = """
SELECT user_id, token_version, password_fingerprint, failures, expires_at
FROM mfa_challenges WHERE token_hash = :token_hash
"""

COUNT_FAILURE = """
UPDATE mfa_challenges SET failures = failures + 1
WHERE token_hash = :token_hash AND failures < :max_failures AND expires_at > :now
"""

SPEND = """
DELETE FROM mfa_challenges
WHERE token_hash = :token_hash AND failures < :max_failures AND expires_at > :now
"""

DELETE_OF_USER = "DELETE FROM mfa_challenges WHERE user_id = :user_id"

# Bounded, like every purge: the write lock is never held long.
PURGE = """
DELETE FROM mfa_challenges WHERE token_hash IN (
    SELECT token_hash FROM mfa_challenges WHERE expires_at <= :now LIMIT :limit
)
"""


async def create(
    conn: Connection,
    *,
    token_hash: str,
    user_id: int,
    token_version: int,
    password_fingerprint: str,
    now: float,
    expires_at: float,
) -> None:
    """Store a new challenge."""
    await conn.execute(
        INSERT_CHALLENGE,
        {
            "token_hash": token_hash,
            "user_id": user_id,
            "token_version": token_version,
            "password_fingerprint": password_fingerprint,
            "now": now,
            "expires_at": expires_at,
        },
    )


async def find(conn: Connection, *, token_hash: str) -> Challenge | None:
    """The challenge with this hash, dead or alive, or None."""
    row = await conn.fetch_one(SELECT_CHALLENGE, {"token_hash": token_hash})
    if row is None:
        return None
    return Challenge(
        user_id=row["user_id"],
        token_version=row["token_version"],
        password_fingerprint=row["password_fingerprint"],
        failures=row["failures"],
        expires_at=row["expires_at"],
    )


async def count_failure(
    conn: Connection, *, token_hash: str, max_failures: int, now: float
) -> bool:
    """Count a wrong code against a live challenge; False if it was dead already."""
    params = {"token_hash": token_hash, "max_failures": max_failures, "now": now}
    return await conn.execute(COUNT_FAILURE, params) > 0


async def spend(conn: Connection, *, token_hash: str, max_failures: int, now: float) -> bool:
    """Spend a live challenge; False if it was dead or spent already."""
    params = {"token_hash": token_hash, "max_failures": max_failures, "now": now}
    return await conn.execute(SPEND, params) > 0


async def delete_of_user(conn: Connection, *, user_id: int) -> None:
    """End every pending second step of the user."""
    await conn.execute(DELETE_OF_USER, {"user_id": user_id})


async def purge(conn: Connection, *, now: float, limit: int) -> int:
    """Delete up to `limit` expired challenges."""
    return await conn.execute(PURGE, {"now": now, "limit": limit})
