"""Shared helpers for the authentication and user tests.

Users are created straight through the query module with one password hash computed per
session (argon2 costs ~0.1 s), and tokens are crafted with PyJWT exactly as the contract
describes them (HS256, `sub`, `ver`, `sid`, `iat`, `exp`), so that a test pays for hashing
only where the route under test hashes. Every user made here gets one open session,
`session_id(user_id)`, which the crafted tokens name.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from typing import Any

import jwt
from aiohttp import web
from aiohttp.test_utils import TestClient
from pwdlib import PasswordHash

from service import tokens
from service.db import Database
from service.queries import sessions as session_queries
from service.queries import users as user_queries
from service.queries.users import User
from tests.conftest import TEST_SECRET_KEY
from tests.log_hygiene import remember, remember_token

Client = TestClient[web.Request, web.Application]

PASSWORD = remember("correct horse battery", "the test users' password")
OTHER_KEY = remember("another-secret-key-that-is-long-enough-9876543210", "SECRET_KEY")
USER_KEYS = {
    "id",
    "username",
    "email",
    "full_name",
    "is_active",
    "is_superuser",
    "totp_enabled",
    "created_at",
    "updated_at",
}

INACTIVE = "Inactive user"
NO_PRIVILEGES = "The user doesn't have enough privileges"
SELF_DELETE = "Super users are not allowed to delete themselves"
USERNAME_TAKEN = "The user with this username already exists"
BAD_LOGIN = "Incorrect username or password"

DROP = object()  # a claim value meaning "leave this claim out"


@functools.cache
def password_hash(password: str = PASSWORD) -> str:
    """The recommended argon2 hash of `password`, computed once per session."""
    return remember(PasswordHash.recommended().hash(password), "a password hash")


async def make_user(
    database: Database,
    username: str,
    *,
    is_superuser: bool = False,
    is_active: bool = True,
    email: str | None = None,
    full_name: str | None = None,
    hashed_password: str | None = None,
) -> User:
    """Insert a user whose password is PASSWORD (unless another hash is given), with a session."""
    async with database.transaction() as conn:
        user = await user_queries.create_user(
            conn,
            username=username,
            hashed_password=hashed_password or password_hash(),
            email=email,
            full_name=full_name,
            is_active=is_active,
            is_superuser=is_superuser,
        )
    await _ensure_session(database, user.id)
    return user


def session_id(user_id: int) -> str:
    """The id of the session make_user opened for the user."""
    return f"test-session-{user_id}"


async def user_row(database: Database, user_id: int) -> dict[str, Any] | None:
    """The user's row as stored, or None."""
    async with database.read() as conn:
        rows = list(await conn.fetch_all("SELECT * FROM users WHERE id = :id", {"id": user_id}))
    return dict(rows[0]) if rows else None


async def rows_named(database: Database, username: str) -> list[dict[str, Any]]:
    """Rows whose username equals `username` ignoring ASCII case."""
    async with database.read() as conn:
        rows = await conn.fetch_all(
            "SELECT * FROM users WHERE lower(username) = lower(:name)", {"name": username}
        )
    return [dict(row) for row in rows]


async def user_count(database: Database) -> int:
    async with database.read() as conn:
        rows = list(await conn.fetch_all("SELECT count(*) FROM users"))
    return int(rows[0][0])


def craft_token(
    *,
    sub: object = DROP,
    ver: object = DROP,
    iat: object = DROP,
    exp: object = DROP,
    key: str = TEST_SECRET_KEY,
    **extra: object,
) -> str:
    """An HS256 JWT with exactly the claims given (DROP leaves a claim out)."""
    claims = {"sub": sub, "ver": ver, "iat": iat, "exp": exp, **extra}
    return remember_token(
        jwt.encode({k: v for k, v in claims.items() if v is not DROP}, key, algorithm="HS256")
    )


def token_claims(user_id: int, token_version: int, **overrides: object) -> dict[str, object]:
    """The claims of a valid token for the user, with some replaced or DROPped."""
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": str(user_id),
        "ver": token_version,
        "sid": session_id(user_id),
        "iat": now,
        "exp": now + 3600,
    }
    claims.update(overrides)
    return claims


def claims_token(
    user_id: int, token_version: int = 1, *, key: str = TEST_SECRET_KEY, **overrides: object
) -> str:
    """A token with the claims of a valid one for the user, some replaced or DROPped."""
    claims = token_claims(user_id, token_version, **overrides)
    return remember_token(
        jwt.encode({k: v for k, v in claims.items() if v is not DROP}, key, algorithm="HS256")
    )


async def token_for(database: Database, user_id: int, **overrides: object) -> str:
    """A valid token for the user as he is stored now (current token version).

    A user created over the API gets his test session here; an ended one stays ended.
    """
    row = await user_row(database, user_id)
    version = row["token_version"] if row is not None else 1
    if row is not None:
        await _ensure_session(database, user_id)
    return claims_token(user_id, version, **overrides)


async def _ensure_session(database: Database, user_id: int) -> None:
    async with database.transaction() as conn:
        rows = await conn.fetch_all(
            "SELECT 1 FROM sessions WHERE id = :id", {"id": session_id(user_id)}
        )
        if not rows:
            await session_queries.create_session(
                conn,
                session_id=session_id(user_id),
                user_id=user_id,
                refresh_token_hash=tokens.token_digest(tokens.new_refresh_token()),
                expires_at=time.time() + 3600,
                user_agent="tests",
                client="127.0.0.1",
            )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def auth(database: Database, user_id: int) -> dict[str, str]:
    """The Authorization header of a valid token for the user."""
    return bearer(await token_for(database, user_id))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    result: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return result


def unsigned_token(claims: dict[str, object]) -> str:
    """An `alg: none` token: header and payload, no signature."""
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}."


async def login(client: Client, username: str, password: str = PASSWORD, **extra: str) -> Any:
    """POST the login form; returns the response."""
    return await client.post(
        "/login/access-token", data={"username": username, "password": password, **extra}
    )


async def login_token(client: Client, username: str, password: str = PASSWORD) -> str:
    """Log in (must succeed) and return the access token."""
    response = await login(client, username, password)
    assert response.status == 200, await response.text()
    body = await response.json()
    remember(body["refresh_token"], "a refresh token")
    return remember_token(body["access_token"])


async def signup(client: Client, username: str, password: str = PASSWORD, **fields: Any) -> Any:
    return await client.post(
        "/users/signup", json={"username": username, "password": password, **fields}
    )


async def user_body(response: Any, status: int = 200) -> dict[str, Any]:
    """Assert a user representation (never a password or hash) and return it."""
    text = await response.text()
    assert response.status == status, text
    body: dict[str, Any] = json.loads(text)
    assert set(body) == USER_KEYS, body
    assert "$argon2" not in text
    return body
