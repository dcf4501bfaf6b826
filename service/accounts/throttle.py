"""Login throttling: failed attempts per (username, client address), and per account.

- Per (username, client): after LOGIN_MAX_FAILURES failures inside
  LOGIN_FAILURE_WINDOW_SECONDS the pair is locked until its window passes, whatever the
  password. An IPv6 client counts by its /64 (a host gets a whole /64 for free).
- Per account, from every address: past ACCOUNT_FREE_FACTOR x LOGIN_MAX_FAILURES failures
  in the window, each further failure makes the account wait 1, 2, 4, ... seconds, at
  most LOGIN_ACCOUNT_MAX_DELAY_SECONDS, and the count carries into the next window while
  failures go on (no free failures again for a guesser who waits out the delay). One
  address alone, locked at LOGIN_MAX_FAILURES, never slows the account; guessing from
  many addresses is slowed to one guess per delay, while a stranger can keep the owner
  waiting no longer than that delay (a lockout would let him lock the owner out for the
  whole window). See SECURITY.md.
- A successful login clears both.
- Wrong current passwords (a password change) and wrong TOTP codes on the user's own
  routes are counted like failed logins, per user (`count_user_check`).

Windows are measured on the clock the caller passes (`now`: the accounts' clock, which
tests inject). A check and the count after it are one step: the unit of work first takes
the key's lock (`lock`), so parallel attempts, on any node, count one by one. The lock
covers exactly the rows counted: a login key's account (its count is shared by all its
pairs), any other key's pair alone, so unrelated pairs (every client asking for password
recovery) never wait for each other.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
from dataclasses import dataclass

from service.accounts.errors import LoginLocked
from service.db import Connection, Database
from service.queries import login_failures, sessions
from service.schemas.users import username_problem
from service.settings import Settings

CURRENT_PASSWORD = "current_password"  # noqa: S105 (a throttle bucket's name, not a password)
TOTP_CODE = "totp_code"  # wrong codes on the user's own TOTP routes
IPV6_PREFIX = 64
# An account's failures from all addresses that cost no delay, in LOGIN_MAX_FAILURES: more
# than one address can make, so a guesser from one address never slows the owner down.
ACCOUNT_FREE_FACTOR = 2


@dataclass(frozen=True, slots=True)
class ThrottleKey:
    """What failures are counted under."""

    username: str
    client: str
    # Counted per account too (a login's key): its lock must then be the account's.
    per_account: bool = False


def throttle_key(username: str, client: str | None, *, secret: str) -> ThrottleKey:
    """The pair for this attempt: a username in lower case, anything else keyed.

    Not a username may be a password typed into the wrong field, which must not be stored
    (an HMAC under the signing key, so a stolen table cannot be guessed through offline),
    or hold a NUL, which PostgreSQL cannot store; `#` keeps these apart from usernames.
    """
    bucket = client_bucket(client)
    if username_problem(username) is None:
        return ThrottleKey(username=username.lower(), client=bucket, per_account=True)
    typed = username.encode("utf-8", "surrogatepass")
    name = "#" + hmac.new(secret.encode(), typed, hashlib.sha256).hexdigest()
    return ThrottleKey(username=name, client=bucket, per_account=True)


def client_bucket(address: str | None) -> str:
    """What a client address counts under: an IPv6 address by its /64, others as they are."""
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return address or ""
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_PREFIX}", strict=False))
    return str(parsed)


def current_password_key(user_id: int) -> ThrottleKey:
    """Wrong current passwords (to change one's password) count per user, from anywhere."""
    return _user_check_key(user_id, CURRENT_PASSWORD)


def totp_code_key(user_id: int) -> ThrottleKey:
    """Wrong codes on the user's own TOTP routes count per user, from anywhere."""
    return _user_check_key(user_id, TOTP_CODE)


def _user_check_key(user_id: int, bucket: str) -> ThrottleKey:
    # `@` never starts a username, nor `#` a username's HMAC: no login pair shares it.
    return ThrottleKey(username=f"@{user_id}", client=bucket)


async def count_user_check(
    database: Database, settings: Settings, key: ThrottleKey, *, session: str, now: float
) -> int:
    """Count a check of the caller's secret before it is made; the caller clears it on success.

    Returns 0 to go on, or the seconds the key is locked for: past LOGIN_MAX_FAILURES
    the check is not made and the asking session ends, so a stolen access token is no
    oracle. Under the key's lock, so parallel checks count one by one, on every node.
    """
    async with database.transaction() as conn:
        await lock(conn, key)
        wait = await seconds_locked(conn, settings, key, now=now)
        if wait:
            await sessions.end_session_by_id(conn, session_id=session)
        else:
            await record_failure(conn, settings, key, now=now)
    return wait


async def lock(conn: Connection, key: ThrottleKey) -> None:
    """Until the unit of work ends, no other checks or counts the rows of the key.

    A login key's rows are its account's (every pair of the username): the account's lock.
    Any other key counts its pair alone: the pair's lock, which no other pair waits for.
    """
    if key.per_account:
        await conn.lock(f"throttle:{key.username}")
    else:
        await conn.lock(f"throttle-pair:{key.username}:{key.client}")


async def refuse_login_if_locked(
    conn: Connection, settings: Settings, key: ThrottleKey, *, now: float
) -> None:
    """LoginLocked while the pair is locked out or its account must still wait."""
    wait = max(
        await seconds_locked(conn, settings, key, now=now),
        await _account_seconds_slowed(conn, settings, key, now=now),
    )
    if wait > 0:
        raise LoginLocked(wait)


async def record_login_failure(
    conn: Connection, settings: Settings, key: ThrottleKey, *, now: float
) -> None:
    """Count one failed login for the pair and for its account."""
    await record_failure(conn, settings, key, now=now)
    await login_failures.record_account_failure(
        conn,
        username=key.username,
        now=now,
        window=settings.login_failure_window_seconds,
        free_failures=ACCOUNT_FREE_FACTOR * settings.login_max_failures,
    )


async def clear_login(conn: Connection, key: ThrottleKey) -> None:
    """A successful login resets the pair's count and its account's."""
    await clear(conn, key)
    await login_failures.clear_account_failures(conn, username=key.username)


async def seconds_locked(
    conn: Connection, settings: Settings, key: ThrottleKey, *, now: float
) -> int:
    """Whole seconds the key is still locked out for (0: it may try)."""
    wait = await login_failures.seconds_locked(
        conn,
        username=key.username,
        client=key.client,
        now=now,
        max_failures=settings.login_max_failures,
        window=settings.login_failure_window_seconds,
    )
    return math.ceil(wait) if wait > 0 else 0


async def record_failure(
    conn: Connection, settings: Settings, key: ThrottleKey, *, now: float
) -> None:
    """Count one failed attempt in the key's current window."""
    await login_failures.record_failure(
        conn,
        username=key.username,
        client=key.client,
        now=now,
        window=settings.login_failure_window_seconds,
    )


async def clear(conn: Connection, key: ThrottleKey) -> None:
    """A success resets the key's count."""
    await login_failures.clear_failures(conn, username=key.username, client=key.client)


async def _account_seconds_slowed(
    conn: Connection, settings: Settings, key: ThrottleKey, *, now: float
) -> int:
    if settings.login_account_max_delay_seconds == 0:  # the per-account delay is off
        return 0
    wait = await login_failures.account_seconds_slowed(
        conn,
        username=key.username,
        now=now,
        free_failures=ACCOUNT_FREE_FACTOR * settings.login_max_failures,
        window=settings.login_failure_window_seconds,
        max_delay=settings.login_account_max_delay_seconds,
    )
    return math.ceil(wait) if wait > 0 else 0
