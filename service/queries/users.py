"""SQL for users. The caller owns the unit of work: nothing here BEGINs or COMMITs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service.clock import utc_now
from service.db import Connection, Row, UniqueViolation, returned
from service.db.dialect import equals_ignoring_case


class UsernameTaken(Exception):
    """Another user already has this username (compared case-insensitively)."""


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    email: str | None
    full_name: str | None
    hashed_password: str
    is_active: bool
    is_superuser: bool
    token_version: int
    created_at: str
    updated_at: str
    email_verified: bool = False  # false again whenever the email changes
    totp_enabled: bool = False  # a login needs a second factor (service/accounts/totp.py)


@dataclass(frozen=True, slots=True)
class UserPage:
    items: list[User]
    count: int


_COLUMNS = (
    "id, username, email, full_name, hashed_password, is_active, is_superuser, "
    "token_version, created_at, updated_at, email_verified, totp_enabled"
)

SELECT_BY_ID = f"SELECT {_COLUMNS} FROM users WHERE id = :id"
# The caller of an authenticated request and whether his token's session is still open:
# one statement, because every authenticated request needs both.
SELECT_WITH_SESSION = f"""
SELECT {_COLUMNS}, EXISTS (
    SELECT 1 FROM sessions
    WHERE sessions.id = :session_id AND sessions.user_id = users.id
      AND sessions.ended_at IS NULL AND sessions.expires_at > :now
) AS session_open
FROM users WHERE id = :id
"""
SELECT_PAGE = f"SELECT {_COLUMNS} FROM users ORDER BY id LIMIT :limit OFFSET :skip"
COUNT_USERS = "SELECT count(*) FROM users"
COUNT_OTHER_ACTIVE_SUPERUSERS = (
    "SELECT count(*) FROM users WHERE is_superuser AND is_active AND id != :id"
)

INSERT_USER = f"""
INSERT INTO users (username, email, full_name, hashed_password, is_active, is_superuser,
                   created_at, updated_at)
VALUES (:username, :email, :full_name, :hashed_password, :is_active, :is_superuser, :now, :now)
RETURNING {_COLUMNS}
"""

UPDATE_USER = f"""
UPDATE users
SET username = :username, email = :email, full_name = :full_name,
    hashed_password = :hashed_password, is_active = :is_active, is_superuser = :is_superuser,
    email_verified = :email_verified,
    token_version = token_version + :bump_token_version, updated_at = :now
WHERE id = :id
RETURNING {_COLUMNS}
"""

UPDATE_PASSWORD_HASH = (
    "UPDATE users SET hashed_password = :new_hash "  # noqa: S105 (SQL, not a password)
    "WHERE id = :id AND hashed_password = :old_hash"
)

DELETE_USER = "DELETE FROM users WHERE id = :id"

# lower() on both engines (ASCII folding on SQLite): the index users_by_email serves it.
SELECT_ACTIVE_BY_EMAIL = f"""
SELECT {_COLUMNS} FROM users WHERE lower(email) = lower(:email) AND is_active
ORDER BY id LIMIT :limit
"""

# Only while the address is still the one the token was sent to.
SET_EMAIL_VERIFIED = """
UPDATE users SET email_verified = TRUE, updated_at = :now WHERE id = :id AND email = :email
"""

# Only in the unit of work that enables or disables the user's TOTP secret.
SET_TOTP_ENABLED = "UPDATE users SET totp_enabled = :enabled, updated_at = :now WHERE id = :id"

# Columns update_user may change; `password` arrives already hashed as hashed_password.
UPDATABLE = ("username", "email", "full_name", "hashed_password", "is_active", "is_superuser")


async def get_by_id(conn: Connection, *, user_id: int) -> User | None:
    """The user with `user_id`, or None."""
    row = await conn.fetch_one(SELECT_BY_ID, {"id": user_id})
    return None if row is None else _user(row)


async def get_with_session(
    conn: Connection, *, user_id: int, session_id: str, now: float
) -> tuple[User, bool] | None:
    """The user with `user_id` and whether his session `session_id` is open; None if no user."""
    row = await conn.fetch_one(
        SELECT_WITH_SESSION, {"id": user_id, "session_id": session_id, "now": now}
    )
    return None if row is None else (_user(row), bool(row["session_open"]))


async def get_by_username(conn: Connection, *, username: str) -> User | None:
    """The user whose username equals `username` ignoring case, or None."""
    matches = equals_ignoring_case(conn.dialect, "username", "username")
    row = await conn.fetch_one(
        f"SELECT {_COLUMNS} FROM users WHERE {matches}", {"username": username}
    )
    return None if row is None else _user(row)


async def list_users(conn: Connection, *, skip: int, limit: int) -> UserPage:
    """A page of users ordered by id, and how many there are."""
    rows = await conn.fetch_all(SELECT_PAGE, {"skip": skip, "limit": limit})
    count = await conn.fetch_one(COUNT_USERS)
    return UserPage(items=[_user(row) for row in rows], count=int(count[0]) if count else 0)


async def create_user(
    conn: Connection,
    *,
    username: str,
    hashed_password: str,
    email: str | None = None,
    full_name: str | None = None,
    is_active: bool = True,
    is_superuser: bool = False,
) -> User:
    """Insert a user; raise UsernameTaken if the name is in use."""
    params = {
        "username": username,
        "email": email,
        "full_name": full_name,
        "hashed_password": hashed_password,
        "is_active": is_active,
        "is_superuser": is_superuser,
        "now": utc_now(),
    }
    try:
        row = await conn.fetch_one(INSERT_USER, params)
    except UniqueViolation as error:  # the only UNIQUE among the columns written
        raise UsernameTaken(username) from error
    return _user(returned(row))


async def update_user(
    conn: Connection,
    *,
    current: User,
    changes: Mapping[str, object],
    revoke_tokens: bool = False,
) -> User:
    """Apply `changes` (keys from UPDATABLE); `revoke_tokens` refuses the user's older tokens."""
    merged = {column: changes.get(column, getattr(current, column)) for column in UPDATABLE}
    params = {
        **merged,
        "email_verified": current.email_verified and merged["email"] == current.email,
        "id": current.id,
        "bump_token_version": int(revoke_tokens),
        "now": utc_now(),
    }
    try:
        row = await conn.fetch_one(UPDATE_USER, params)
    except UniqueViolation as error:
        raise UsernameTaken(str(merged["username"])) from error
    return _user(returned(row))


async def replace_password_hash(
    conn: Connection, *, user_id: int, old_hash: str, new_hash: str
) -> bool:
    """Store a re-hash of the same password (new parameters); tokens stay valid.

    Only if the stored hash is still `old_hash` (False otherwise): a password changed
    meanwhile wins.
    """
    params = {"id": user_id, "old_hash": old_hash, "new_hash": new_hash}
    return await conn.execute(UPDATE_PASSWORD_HASH, params) > 0


async def delete_user(conn: Connection, *, user_id: int) -> bool:
    """Delete the user; False if there was none."""
    return await conn.execute(DELETE_USER, {"id": user_id}) > 0


async def active_by_email(conn: Connection, *, email: str, limit: int) -> list[User]:
    """Active users whose email equals `email` ignoring (ASCII) case, by id."""
    rows = await conn.fetch_all(SELECT_ACTIVE_BY_EMAIL, {"email": email, "limit": limit})
    return [_user(row) for row in rows]


async def set_email_verified(conn: Connection, *, user_id: int, email: str) -> bool:
    """Mark the user's address verified if it is still `email`; False if not."""
    params = {"id": user_id, "email": email, "now": utc_now()}
    return await conn.execute(SET_EMAIL_VERIFIED, params) > 0


async def set_totp_enabled(conn: Connection, *, user_id: int, enabled: bool) -> bool:
    """Record whether the user's logins need a second factor; False if there is no user."""
    params = {"id": user_id, "enabled": enabled, "now": utc_now()}
    return await conn.execute(SET_TOTP_ENABLED, params) > 0


async def count_other_active_superusers(conn: Connection, *, user_id: int) -> int:
    """How many active superusers there are besides `user_id`."""
    row = await conn.fetch_one(COUNT_OTHER_ACTIVE_SUPERUSERS, {"id": user_id})
    return int(returned(row)[0])


def _user(row: Row) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        full_name=row["full_name"],
        hashed_password=row["hashed_password"],
        is_active=bool(row["is_active"]),
        is_superuser=bool(row["is_superuser"]),
        token_version=row["token_version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        email_verified=bool(row["email_verified"]),
        totp_enabled=bool(row["totp_enabled"]),
    )
