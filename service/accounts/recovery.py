"""Password recovery: a reset link by email, then a new password with the link's token.

`request_reset` answers the same way whether or not an active user has the address, so
the answer names no account; the work it does differs only by a few rows written. It is
throttled per address and per client (as logins are, LOGIN_MAX_FAILURES requests per
LOGIN_FAILURE_WINDOW_SECONDS), and a user gets at most one message per
RECOVERY_MIN_INTERVAL_SECONDS. `reset_password` spends the token, sets the password and
ends every session and access token of the user.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from loguru import logger

from service.accounts import mailing, throttle, users
from service.accounts.context import Accounts, Caller
from service.accounts.errors import InactiveUser, InvalidAccountToken, TooManyRequests
from service.accounts.throttle import ThrottleKey
from service.db import Connection
from service.mail.messages import Kind
from service.messages import Language
from service.queries import account_tokens
from service.queries import users as user_queries

# Accounts sharing one address each get their own link; more than this is not a person.
_MAX_ACCOUNTS_PER_ADDRESS = 5


async def request_reset(
    accounts: Accounts, *, email: str, language: Language, caller: Caller
) -> None:
    """Queue a reset link to each active user with `email` (ignoring case), if any."""
    now = time.time()
    queued = False
    async with accounts.database.transaction() as conn:
        await _count_request(conn, accounts, email=email, caller=caller)
        matches = await user_queries.active_by_email(
            conn, email=email, limit=_MAX_ACCOUNTS_PER_ADDRESS
        )
        for user in matches:
            kind = Kind.RESET_PASSWORD
            if await mailing.sent_recently(conn, accounts, user_id=user.id, kind=kind, now=now):
                continue
            await mailing.issue_with_message(
                conn, accounts, user=user, kind=kind, language=language
            )
            queued = True
            logger.info(f"password reset link queued for user {user.id}")
    if queued:  # committed: the sender may take it now
        accounts.mail_queued()


async def reset_password(accounts: Accounts, *, token: str, new_password: str) -> None:
    """Spend the token for a new password; every session and access token of the user ends."""
    hashed = mailing.token_hash(token)
    async with accounts.database.read() as conn:  # a dead token costs no argon2 hash
        await mailing.usable(conn, hashed=hashed, kind=Kind.RESET_PASSWORD)
    new_hash = await accounts.passwords.hash(new_password)
    async with accounts.database.transaction() as conn:
        # Again, inside the unit of work: spent or outdated meanwhile?
        _, user = await mailing.usable(conn, hashed=hashed, kind=Kind.RESET_PASSWORD, lock=True)
        if not user.is_active:
            raise InactiveUser
        if not await account_tokens.delete(conn, token_hash=hashed):
            raise InvalidAccountToken  # spent a moment ago by a parallel request
        await users.set_password(conn, user_id=user.id, hashed_password=new_hash)
    logger.info(f"password of user {user.id} reset by an emailed link; his sessions ended")


async def _count_request(
    conn: Connection, accounts: Accounts, *, email: str, caller: Caller
) -> None:
    """Count the request against the address and the client; TooManyRequests past the limit."""
    keyed = hmac.new(accounts.token_key.encode(), email.lower().encode(), hashlib.sha256)
    # `recovery#` cannot begin a username: these counts never mix with login failures.
    keys = (
        ThrottleKey(username=f"recovery#{keyed.hexdigest()}", client=""),
        ThrottleKey(username="recovery#", client=caller.address or ""),
    )
    # Each key's own lock (its pair's): a request waits only for others on its address or
    # from its client, and always in this order, so two never wait for each other's.
    for key in keys:
        await throttle.lock(conn, key)
    now = accounts.clock()
    wait = max(
        [await throttle.seconds_locked(conn, accounts.settings, key, now=now) for key in keys]
    )
    if wait > 0:
        raise TooManyRequests(wait)
    for key in keys:
        await throttle.record_failure(conn, accounts.settings, key, now=now)
