"""Logging in: authenticate, then the verdict on the attempt, then a session and tokens.

The steps, in this order, are the places later rules go:
1. the throttle, read before the hash (a locked pair, or an account that must still wait,
   is refused without spending one);
2. `authenticate`: the password hash is verified off the event loop, outside any unit of
   work (no write lock is held for ~0.1 s);
3. `_verdict`, in the one unit of work that also opens the session: the throttle again
   (parallel attempts each see the failures committed before them), then what the
   verified user may do. A check that the user is still as verified (same password hash,
   token version, active flag: `_as_verified`), or a second factor that must come
   before a session, is decided there, before `open_session`.
"""

from __future__ import annotations

import dataclasses
import enum

from loguru import logger

from service.accounts import second_factor, sessions, throttle
from service.accounts.context import Accounts, Caller
from service.accounts.errors import (
    EmailNotVerified,
    InactiveUser,
    IncorrectLogin,
    SecondFactorRequired,
)
from service.accounts.sessions import OpenedSession, Tokens
from service.accounts.throttle import ThrottleKey
from service.db import Connection
from service.queries import sessions as session_queries
from service.queries import users as user_queries
from service.queries.users import User
from service.schemas.users import username_problem


class Verdict(enum.Enum):
    """What a login attempt earned, once the password was checked (a lockout raises)."""

    REFUSED = "refused"  # unknown user or wrong password: one more failure counted
    INACTIVE = "inactive"  # the right password of a deactivated user
    UNVERIFIED = "unverified"  # the right password, REQUIRE_VERIFIED_EMAIL, no verified address
    SECOND_FACTOR = "second_factor"  # the right password of a user with TOTP on: a code next
    ACCEPTED = "accepted"  # a session opens


async def log_in(accounts: Accounts, *, username: str, password: str, caller: Caller) -> Tokens:
    """Tokens of a new session, or IncorrectLogin, InactiveUser, LoginLocked.

    SecondFactorRequired (with an mfa_token, and no session) for a user with TOTP on.
    """
    key = throttle.throttle_key(username, caller.address, secret=accounts.token_key)
    async with accounts.database.read() as conn:
        await throttle.refuse_login_if_locked(
            conn, accounts.settings, key, now=accounts.clock()
        )  # spare the hash
    user = await authenticate(accounts, username=username, password=password)
    opened: OpenedSession | None = None
    mfa_token: str | None = None
    try:
        async with accounts.database.transaction() as conn:
            verdict = await _verdict(conn, accounts, key, user)
            if verdict is Verdict.ACCEPTED and user is not None:
                opened = await sessions.open_session(conn, accounts, user=user, caller=caller)
            if verdict is Verdict.SECOND_FACTOR and user is not None:
                mfa_token = await second_factor.issue_challenge(conn, accounts, user=user)
    except session_queries.UserGone:  # deleted while the password was being verified
        raise IncorrectLogin from None
    if opened is not None and user is not None:
        return sessions.issue_tokens(accounts, user=user, session=opened)
    if mfa_token is not None and user is not None:
        logger.info(f"password accepted for user {user.id}; a second factor is asked")
        raise SecondFactorRequired(mfa_token)
    # Raised after the unit of work, so that the failure it counted is committed.
    if verdict is Verdict.INACTIVE:
        raise InactiveUser
    if verdict is Verdict.UNVERIFIED:
        raise EmailNotVerified
    _log_failure(username)
    raise IncorrectLogin


async def authenticate(accounts: Accounts, *, username: str, password: str) -> User | None:
    """The user if the password matches, else None, in the same time for an unknown name.

    A hash made with stale parameters is upgraded (only if the password is unchanged
    meanwhile: see replace_password_hash).
    """
    user = None
    if username_problem(username) is None:  # anything else names no one: spare the query
        async with accounts.database.read() as conn:
            user = await user_queries.get_by_username(conn, username=username)
    hashed = user.hashed_password if user is not None else None
    matches, new_hash = await accounts.passwords.verify(password, hashed)
    if user is None or not matches:
        return None
    if new_hash is None:
        return user
    async with accounts.database.transaction() as conn:
        replaced = await user_queries.replace_password_hash(
            conn, user_id=user.id, old_hash=user.hashed_password, new_hash=new_hash
        )
        stored = None if replaced else await user_queries.get_by_id(conn, user_id=user.id)
    if replaced:  # the user as now stored, for the verdict's comparison
        return dataclasses.replace(user, hashed_password=new_hash)
    if stored is None:  # deleted meanwhile: the verdict refuses him
        return user
    # Replaced meanwhile: by a parallel login's upgrade (the same password, which must not
    # be refused) or by a password change (which must be): the stored hash tells.
    matches_stored, _ = await accounts.passwords.verify(password, stored.hashed_password)
    return stored if matches_stored else user


async def _verdict(
    conn: Connection, accounts: Accounts, key: ThrottleKey, user: User | None
) -> Verdict:
    """The attempt's verdict, inside the unit of work that opens the session.

    At most LOGIN_MAX_FAILURES parallel attempts get an answer other than 429, and a 429
    says nothing about the password: attempts on one username take turns here (the
    throttle's lock), each seeing the failures counted before it.
    """
    await throttle.lock(conn, key)
    await throttle.refuse_login_if_locked(conn, accounts.settings, key, now=accounts.clock())
    stored = None if user is None else await _as_verified(conn, user)
    if stored is None:
        await throttle.record_login_failure(conn, accounts.settings, key, now=accounts.clock())
        return Verdict.REFUSED
    if not stored.totp_enabled:
        # With TOTP on only the second step clears the failures: otherwise the password
        # would reset the count of wrong codes before each new mfa_token.
        await throttle.clear_login(conn, key)
    if not stored.is_active:
        return Verdict.INACTIVE
    if _must_verify(accounts, stored):
        return Verdict.UNVERIFIED
    if stored.totp_enabled:  # as stored now: enabled meanwhile still asks for a code
        return Verdict.SECOND_FACTOR
    return Verdict.ACCEPTED


async def _as_verified(conn: Connection, user: User) -> User | None:
    """The user as stored now, if he is as he was when his password was verified.

    The hash is verified outside any unit of work (~0.1 s): a password change, a reset or
    a deactivation committed meanwhile ended the sessions that existed then, so a session
    opened now for the old password would survive it. Such a login is refused like a
    wrong password. The user is read FOR SHARE: a change in flight is waited for and seen
    here, or waits itself and then ends the session this login opens.
    """
    now = await user_queries.get_for_share(conn, user_id=user.id)
    if now is None or (now.hashed_password, now.token_version, now.is_active) != (
        user.hashed_password,
        user.token_version,
        user.is_active,
    ):
        return None
    return now


def _must_verify(accounts: Accounts, user: User) -> bool:
    # Superusers are exempt: create-superuser gives no address, and the operator must
    # never be locked out of the service he configures.
    return (
        accounts.settings.require_verified_email
        and not user.email_verified
        and not user.is_superuser
    )


def _log_failure(username: str) -> None:
    # The username only if it could be one: a password typed into the wrong field must
    # not reach the log.
    shown = repr(username) if username_problem(username) is None else "(not a username)"
    logger.warning(f"failed login for {shown}")
