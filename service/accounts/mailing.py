"""Tokens that travel by mail: issue one with its message, check one that comes back.

A token is 256 random bits (token_urlsafe), stored only as its SHA-256, bound to the
user's token_version (a password change by any path bumps it, so the token dies) and
spent on use. Its message goes into the outbox in the same unit of work that stores the
token: both commit, or neither does, and the background sender (service/mail/sender.py)
delivers it. The token itself is never logged.
"""

from __future__ import annotations

import secrets
import time

from service import tokens
from service.accounts.context import Accounts
from service.accounts.errors import InvalidAccountToken
from service.db import Connection
from service.ids import is_token_id
from service.mail.messages import Kind, compose, link
from service.messages import Language
from service.queries import account_tokens, outbox
from service.queries import users as user_queries
from service.queries.account_tokens import AccountToken
from service.queries.users import User


async def issue_with_message(
    conn: Connection, accounts: Accounts, *, user: User, kind: Kind, language: Language
) -> None:
    """Store a new token of `kind` for `user` and queue its message to his address."""
    if user.email is None:
        raise ValueError("a user without an email address gets no message")
    token = secrets.token_urlsafe(32)
    minutes = _lifetime_minutes(accounts, kind)
    now = time.time()
    await account_tokens.create(
        conn,
        token_hash=tokens.token_digest(token),
        purpose=kind.value,
        user_id=user.id,
        token_version=user.token_version,
        email=user.email if kind is Kind.VERIFY_EMAIL else None,
        now=now,
        expires_at=now + minutes * 60,
    )
    url = link(accounts.settings.public_url, kind, token)
    message = compose(kind, language, username=user.username, url=url, minutes=minutes)
    await outbox.queue(
        conn,
        kind=kind.value,
        recipient=user.email,
        subject=message.subject,
        body_text=message.text,
        body_html=message.html,
        now=now,
    )


async def sent_recently(
    conn: Connection, accounts: Accounts, *, user_id: int, kind: Kind, now: float
) -> bool:
    """Whether a message of `kind` went to the user less than RECOVERY_MIN_INTERVAL ago."""
    last = await account_tokens.last_issued(conn, user_id=user_id, purpose=kind.value)
    return last is not None and now - last < accounts.settings.recovery_min_interval_seconds


def token_hash(token: str) -> str:
    """The stored form of a token; InvalidAccountToken for what no token looks like."""
    if not is_token_id(token):  # a NUL, say: answered without asking the database
        raise InvalidAccountToken
    return tokens.token_digest(token)


async def usable(
    conn: Connection, *, hashed: str, kind: Kind, lock: bool = False
) -> tuple[AccountToken, User]:
    """The live token and its user; InvalidAccountToken if either says it is dead.

    With `lock` (in a unit of work that spends the token) the user is locked: a password
    change in flight is waited for, and outdates the token, as if it had come first.
    """
    found = await account_tokens.find(conn, token_hash=hashed, purpose=kind.value)
    if found is None or found.expires_at <= time.time():
        raise InvalidAccountToken
    read = user_queries.get_for_update if lock else user_queries.get_by_id
    user = await read(conn, user_id=found.user_id)
    if user is None or user.token_version != found.token_version:
        raise InvalidAccountToken
    return found, user


def _lifetime_minutes(accounts: Accounts, kind: Kind) -> int:
    if kind is Kind.RESET_PASSWORD:
        return accounts.settings.reset_token_expire_minutes
    return accounts.settings.verify_token_expire_minutes
