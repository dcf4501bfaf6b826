"""Login throttling: failed attempts per (username, client address) within a window.

After LOGIN_MAX_FAILURES failures inside LOGIN_FAILURE_WINDOW_SECONDS the pair is locked
until its window passes, whatever the password; a success clears the count. Wrong
current passwords (a password change) are counted the same way, per user.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from dataclasses import dataclass

from service.accounts.errors import LoginLocked
from service.db import Connection
from service.queries import login_failures
from service.schemas.users import username_problem
from service.settings import Settings


@dataclass(frozen=True, slots=True)
class ThrottleKey:
    """What failures are counted under."""

    username: str
    client: str


def throttle_key(username: str, client: str | None, *, secret: str) -> ThrottleKey:
    """The pair for this attempt: a username in lower case, anything else keyed.

    Not a username may be a password typed into the wrong field, which must not be stored
    (an HMAC under the signing key, so a stolen table cannot be guessed through offline),
    or hold a NUL, which PostgreSQL cannot store; `#` keeps these apart from usernames.
    """
    if username_problem(username) is None:
        return ThrottleKey(username=username.lower(), client=client or "")
    typed = username.encode("utf-8", "surrogatepass")
    name = "#" + hmac.new(secret.encode(), typed, hashlib.sha256).hexdigest()
    return ThrottleKey(username=name, client=client or "")


def current_password_key(user_id: int) -> ThrottleKey:
    """Wrong current passwords (to change one's password) count per user, from anywhere.

    `@` never starts a username, nor `#` a username's HMAC: no login pair shares it.
    """
    return ThrottleKey(username=f"@{user_id}", client=CURRENT_PASSWORD)


CURRENT_PASSWORD = "current_password"  # noqa: S105 (a throttle bucket's name, not a password)


async def refuse_if_locked(conn: Connection, settings: Settings, key: ThrottleKey) -> None:
    """LoginLocked while the pair is locked out."""
    wait = await seconds_locked(conn, settings, key)
    if wait > 0:
        raise LoginLocked(wait)


async def seconds_locked(conn: Connection, settings: Settings, key: ThrottleKey) -> int:
    """Whole seconds the key is still locked out for (0: it may try)."""
    wait = await login_failures.seconds_locked(
        conn,
        username=key.username,
        client=key.client,
        now=time.time(),
        max_failures=settings.login_max_failures,
        window=settings.login_failure_window_seconds,
    )
    return math.ceil(wait) if wait > 0 else 0


async def record_failure(conn: Connection, settings: Settings, key: ThrottleKey) -> None:
    """Count one failed attempt in the pair's current window."""
    await login_failures.record_failure(
        conn,
        username=key.username,
        client=key.client,
        now=time.time(),
        window=settings.login_failure_window_seconds,
    )


async def clear(conn: Connection, key: ThrottleKey) -> None:
    """A successful login resets the pair's count."""
    await login_failures.clear_failures(conn, username=key.username, client=key.client)
