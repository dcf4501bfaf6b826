"""SQL for login sessions and their rotating refresh tokens (stored as hashes only).

Each session keeps its current refresh token's hash and the one spent just before it
(spent_refresh_tokens, at most one row a session), for theft detection.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from service.clock import utc_now
from service.db import Connection, ForeignKeyViolation, Row
from service.db.dialect import for_update, for_update_skip_locked


class UserGone(Exception):
    """The session's user no longer exists."""


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user_id: int
    created_at: str
    last_used_at: str
    expires_at: float
    ended_at: str | None
    user_agent: str | None
    client: str | None

    def is_open(self, now: float) -> bool:
        return self.ended_at is None and self.expires_at > now

    @property
    def started_at(self) -> float:
        """When the session opened, in seconds since the epoch (created_at is UTC text)."""
        return datetime.fromisoformat(self.created_at).timestamp()


_COLUMNS = "id, user_id, created_at, last_used_at, expires_at, ended_at, user_agent, client"

INSERT_SESSION = """
INSERT INTO sessions (id, user_id, refresh_token_hash, created_at, last_used_at, expires_at,
                      user_agent, client)
VALUES (:id, :user_id, :refresh_token_hash, :now, :now, :expires_at, :user_agent, :client)
"""

SELECT_BY_REFRESH_HASH = f"SELECT {_COLUMNS} FROM sessions WHERE refresh_token_hash = :hash"

SELECT_SESSION_OF_SPENT = "SELECT session_id FROM spent_refresh_tokens WHERE token_hash = :hash"

# A session keeps one spent hash, its previous token's: bounded, however often it rotates.
FORGET_SPENT_HASHES = "DELETE FROM spent_refresh_tokens WHERE session_id = :id"

INSERT_SPENT_HASH = """
INSERT INTO spent_refresh_tokens (token_hash, session_id)
SELECT refresh_token_hash, id FROM sessions WHERE id = :id AND refresh_token_hash = :old_hash
"""

ROTATE = """
UPDATE sessions
SET refresh_token_hash = :new_hash, last_used_at = :now, expires_at = :expires_at
WHERE id = :id AND refresh_token_hash = :old_hash
"""

SELECT_OPEN_FOR_USER = f"""
SELECT {_COLUMNS} FROM sessions
WHERE user_id = :user_id AND ended_at IS NULL AND expires_at > :now
ORDER BY created_at, id
"""

END_SESSION = """
UPDATE sessions SET ended_at = :now_text
WHERE id = :id AND user_id = :user_id AND ended_at IS NULL AND expires_at > :now
"""

END_SESSION_BY_ID = "UPDATE sessions SET ended_at = :now_text WHERE id = :id AND ended_at IS NULL"

# coalesce: with no session to keep (NULL), `id <> NULL` is NULL, so every session ends.
END_USER_SESSIONS = """
UPDATE sessions SET ended_at = :now_text
WHERE user_id = :user_id AND ended_at IS NULL AND coalesce(id <> :keep, TRUE)
"""

# Bounded: one purge run never holds many row locks for long. {skip_locked}: two purges
# take different rows, and a session being refreshed is left to the next run.
PURGE = """
DELETE FROM sessions WHERE id IN (
    SELECT id FROM sessions WHERE ended_at IS NOT NULL OR expires_at <= :now LIMIT :limit
    {skip_locked}
)
"""


async def create_session(
    conn: Connection,
    *,
    session_id: str,
    user_id: int,
    refresh_token_hash: str,
    expires_at: float,
    user_agent: str | None,
    client: str | None,
) -> None:
    """Open a session for `user_id` whose refresh token hashes to `refresh_token_hash`."""
    try:
        await conn.execute(
            INSERT_SESSION,
            {
                "id": session_id,
                "user_id": user_id,
                "refresh_token_hash": refresh_token_hash,
                "now": utc_now(),
                "expires_at": expires_at,
                "user_agent": user_agent,
                "client": client,
            },
        )
    except ForeignKeyViolation as error:  # the user was deleted meanwhile
        raise UserGone(user_id) from error


async def by_refresh_hash(conn: Connection, *, token_hash: str) -> Session | None:
    """The session whose current refresh token hashes to `token_hash`, open or not.

    Locked until the unit of work ends: a parallel refresh with the same token waits,
    then finds it spent (a replay), as if it had come after.
    """
    row = await conn.fetch_one(
        SELECT_BY_REFRESH_HASH + for_update(conn.dialect), {"hash": token_hash}
    )
    return None if row is None else _session(row)


async def session_of_spent_token(conn: Connection, *, token_hash: str) -> str | None:
    """The id of the session an already-spent refresh token belonged to, or None."""
    row = await conn.fetch_one(SELECT_SESSION_OF_SPENT, {"hash": token_hash})
    return None if row is None else str(row[0])


async def rotate(
    conn: Connection, *, session_id: str, old_hash: str, new_hash: str, expires_at: float
) -> bool:
    """Spend the session's current refresh token `old_hash` for a new one (False: not current).

    Only the hash just spent is kept (theft detection needs no older one): the session's
    earlier spent hashes are forgotten.
    """
    await conn.execute(FORGET_SPENT_HASHES, {"id": session_id})
    await conn.execute(INSERT_SPENT_HASH, {"id": session_id, "old_hash": old_hash})
    params = {
        "id": session_id,
        "old_hash": old_hash,
        "new_hash": new_hash,
        "now": utc_now(),
        "expires_at": expires_at,
    }
    return await conn.execute(ROTATE, params) > 0


async def list_open(conn: Connection, *, user_id: int, now: float) -> list[Session]:
    """The user's sessions that are neither ended nor expired, oldest first."""
    rows = await conn.fetch_all(SELECT_OPEN_FOR_USER, {"user_id": user_id, "now": now})
    return [_session(row) for row in rows]


async def end_session(conn: Connection, *, session_id: str, user_id: int, now: float) -> bool:
    """End the user's open session; False if it is not his, unknown or already over."""
    params = {"id": session_id, "user_id": user_id, "now": now, "now_text": utc_now()}
    return await conn.execute(END_SESSION, params) > 0


async def end_session_by_id(conn: Connection, *, session_id: str) -> None:
    """End a session whatever its owner (a stolen refresh token was replayed)."""
    await conn.execute(END_SESSION_BY_ID, {"id": session_id, "now_text": utc_now()})


async def end_user_sessions(conn: Connection, *, user_id: int, keep: str | None = None) -> None:
    """End every open session of the user, except `keep`."""
    await conn.execute(END_USER_SESSIONS, {"user_id": user_id, "keep": keep, "now_text": utc_now()})


async def purge(conn: Connection, *, now: float, limit: int) -> int:
    """Delete up to `limit` ended or expired sessions (their spent tokens go with them)."""
    sql = PURGE.format(skip_locked=for_update_skip_locked(conn.dialect))
    return await conn.execute(sql, {"now": now, "limit": limit})


def _session(row: Row) -> Session:
    return Session(
        id=row["id"],
        user_id=row["user_id"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        expires_at=row["expires_at"],
        ended_at=row["ended_at"],
        user_agent=row["user_agent"],
        client=row["client"],
    )
