"""The login's second step, for users with TOTP on.

The right password earns an `mfa_token` instead of tokens: opaque (only its SHA-256 is
stored), good for MFA_TOKEN_SECONDS, spent by one right code, dead after
MAX_CODE_FAILURES wrong ones, and bound to the user's password hash and token version
when issued (a password change or reset meanwhile makes it worthless). Wrong codes also
count as failed logins for the (username, client) pair and the account, so the throttle
stops a guesser who knows the password. The session opens in the unit of work that
spends the code and the token: either both are spent, or neither.
"""

from __future__ import annotations

import enum
import hashlib
import secrets

from loguru import logger

from service import tokens
from service.accounts import sessions, throttle, totp
from service.accounts.context import Accounts, Caller
from service.accounts.errors import IncorrectLoginCode, InvalidMfaToken
from service.accounts.sessions import OpenedSession, Tokens
from service.accounts.throttle import ThrottleKey
from service.db import Connection
from service.queries import mfa_challenges
from service.queries import users as user_queries
from service.queries.mfa_challenges import Challenge
from service.queries.users import User

MFA_TOKEN_SECONDS = 300
MAX_CODE_FAILURES = 5


class _Outcome(enum.Enum):
    ACCEPTED = "accepted"
    WRONG_CODE = "wrong_code"  # counted against the token and the throttle


async def issue_challenge(conn: Connection, accounts: Accounts, *, user: User) -> str:
    """A new mfa_token for `user` as verified, in the login's unit of work."""
    token = secrets.token_urlsafe(32)
    now = accounts.clock()
    await mfa_challenges.create(
        conn,
        token_hash=tokens.token_digest(token),
        user_id=user.id,
        token_version=user.token_version,
        password_fingerprint=_fingerprint(user.hashed_password),
        now=now,
        expires_at=now + MFA_TOKEN_SECONDS,
    )
    return token


async def complete_login(
    accounts: Accounts, *, mfa_token: str, code: str, caller: Caller
) -> Tokens:
    """Tokens of a new session for a live mfa_token and a right code.

    InvalidMfaToken, IncorrectLoginCode, or LoginLocked while the throttle holds.
    """
    token_hash = tokens.token_digest(mfa_token)
    async with accounts.database.read() as conn:
        challenge = await mfa_challenges.find(conn, token_hash=token_hash)
        user = await _bound_user(conn, accounts, challenge)
    if user is None:
        raise InvalidMfaToken
    key = throttle.throttle_key(user.username, caller.address, secret=accounts.token_key)
    opened: OpenedSession | None = None
    async with accounts.database.transaction() as conn:
        await throttle.lock(conn, key)  # parallel wrong codes count one by one, as logins
        await throttle.refuse_login_if_locked(conn, accounts.settings, key, now=accounts.clock())
        outcome = await _second_step(conn, accounts, token_hash, user, code, key)
        if outcome is _Outcome.ACCEPTED:
            opened = await sessions.open_session(conn, accounts, user=user, caller=caller)
    if opened is None:  # raised after the unit of work, so the failure counted is committed
        logger.warning(f"wrong second factor at login for user {user.id}")
        raise IncorrectLoginCode
    return sessions.issue_tokens(accounts, user=user, session=opened)


async def _second_step(
    conn: Connection, accounts: Accounts, token_hash: str, user: User, code: str, key: ThrottleKey
) -> _Outcome:
    """Spend the code, then the token; InvalidMfaToken (rolling back) if it died meanwhile."""
    now = accounts.clock()
    challenge = await mfa_challenges.find(conn, token_hash=token_hash)
    fresh = await _bound_user(conn, accounts, challenge, lock=True)
    if fresh is None or fresh.id != user.id:  # outdated since it was read
        raise InvalidMfaToken
    if not await totp.spend_code(conn, accounts, user_id=user.id, code=code):
        counted = await mfa_challenges.count_failure(
            conn, token_hash=token_hash, max_failures=MAX_CODE_FAILURES, now=now
        )
        if not counted:  # dead meanwhile (a parallel wrong code was its last)
            raise InvalidMfaToken
        await throttle.record_login_failure(conn, accounts.settings, key, now=now)
        return _Outcome.WRONG_CODE
    spent = await mfa_challenges.spend(
        conn, token_hash=token_hash, max_failures=MAX_CODE_FAILURES, now=now
    )
    if not spent:  # spent or killed by a parallel request: the code goes unspent too
        raise InvalidMfaToken
    await throttle.clear_login(conn, key)
    return _Outcome.ACCEPTED


async def _bound_user(
    conn: Connection, accounts: Accounts, challenge: Challenge | None, *, lock: bool = False
) -> User | None:
    """The challenge's user if it is live and he is as he was when it was issued.

    With `lock` (the unit of work that opens the session) he is read FOR SHARE, as a
    password login reads him: a change in flight is waited for and seen, or ends the
    session this step opens.
    """
    if challenge is None or challenge.failures >= MAX_CODE_FAILURES:
        return None
    if challenge.expires_at <= accounts.clock():
        return None
    read = user_queries.get_for_share if lock else user_queries.get_by_id
    user = await read(conn, user_id=challenge.user_id)
    if user is None or not (user.is_active and user.totp_enabled):
        return None
    if user.token_version != challenge.token_version:
        return None
    if _fingerprint(user.hashed_password) != challenge.password_fingerprint:
        return None
    return user


def _fingerprint(hashed_password: str) -> str:
    # A digest, not the hash itself: one more copy of a password hash helps no one.
    return hashlib.sha256(hashed_password.encode()).hexdigest()
