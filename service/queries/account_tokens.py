"""SQL for password-reset and email-verification tokens: only their SHA-256 is stored."""

from __future__ import annotations

from dataclasses import dataclass

from service.db import Connection, Row
from service.db.dialect import for_update_skip_locked


@dataclass(frozen=True, slots=True)
class AccountToken:
    purpose: str
    user_id: int
    token_version: int  # the user's, when it was issued: a password change bumps it
    email: str | None  # the address a verification token proves
    expires_at: float


INSERT_ROW = """
INSERT INTO account_tokens (token_hash, purpose, user_id, token_version, email, created_at,
                            expires_at)
VALUES (:token_hash, :purpose, :user_id, :token_version, :email, :now, :expires_at)
"""

SELECT_ROW = """
SELECT purpose, user_id, token_version, email, expires_at FROM account_tokens
WHERE token_hash = :token_hash AND purpose = :purpose
"""

DELETE_ROW = "DELETE FROM account_tokens WHERE token_hash = :token_hash"

SELECT_LAST_ISSUED = """
SELECT max(created_at) FROM account_tokens WHERE user_id = :user_id AND purpose = :purpose
"""

# Bounded, like every purge: row locks are never held long; two purges take different rows.
PURGE = """
DELETE FROM account_tokens WHERE token_hash IN (
    SELECT token_hash FROM account_tokens WHERE expires_at <= :now LIMIT :limit{skip_locked}
)
"""


async def create(
    conn: Connection,
    *,
    token_hash: str,
    purpose: str,
    user_id: int,
    token_version: int,
    email: str | None,
    now: float,
    expires_at: float,
) -> None:
    """Store a new token's hash."""
    await conn.execute(
        INSERT_ROW,
        {
            "token_hash": token_hash,
            "purpose": purpose,
            "user_id": user_id,
            "token_version": token_version,
            "email": email,
            "now": now,
            "expires_at": expires_at,
        },
    )


async def find(conn: Connection, *, token_hash: str, purpose: str) -> AccountToken | None:
    """The token of `purpose` with this hash, expired or not, or None."""
    row = await conn.fetch_one(SELECT_ROW, {"token_hash": token_hash, "purpose": purpose})
    return None if row is None else _token(row)


async def delete(conn: Connection, *, token_hash: str) -> bool:
    """Spend the token; False if it was already gone."""
    return await conn.execute(DELETE_ROW, {"token_hash": token_hash}) > 0


async def last_issued(conn: Connection, *, user_id: int, purpose: str) -> float | None:
    """When the user's newest token of `purpose` was issued (epoch seconds), or None."""
    row = await conn.fetch_one(SELECT_LAST_ISSUED, {"user_id": user_id, "purpose": purpose})
    return None if row is None or row[0] is None else float(row[0])


async def purge(conn: Connection, *, now: float, limit: int) -> int:
    """Delete up to `limit` expired tokens."""
    sql = PURGE.format(skip_locked=for_update_skip_locked(conn.dialect))
    return await conn.execute(sql, {"now": now, "limit": limit})


def _token(row: Row) -> AccountToken:
    return AccountToken(
        purpose=row["purpose"],
        user_id=row["user_id"],
        token_version=row["token_version"],
        email=row["email"],
        expires_at=row["expires_at"],
    )
