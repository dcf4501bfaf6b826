"""Email verification: a link to the user's address, and the token that comes back.

`email_verified` is false for a new address and again whenever the address changes; a
token proves only the address it was sent to. With REQUIRE_VERIFIED_EMAIL, signup needs
an address and a login with an unverified one is refused (login.py).
"""

from __future__ import annotations

import time

from loguru import logger

from service.accounts import mailing
from service.accounts.context import Accounts
from service.accounts.errors import (
    EmailAlreadyVerified,
    InactiveUser,
    InvalidAccountToken,
    NoEmail,
    UserNotFound,
)
from service.mail.messages import Kind
from service.messages import Language
from service.queries import account_tokens
from service.queries import users as user_queries


async def request_verification(accounts: Accounts, *, user_id: int, language: Language) -> None:
    """Queue a verification link to the user's address (at most one per min. interval)."""
    async with accounts.database.transaction() as conn:
        # As he is now, and locked: parallel requests queue one link, not one each.
        user = await user_queries.get_for_update(conn, user_id=user_id)
        if user is None:
            raise UserNotFound
        if user.email is None:
            raise NoEmail
        if user.email_verified:
            raise EmailAlreadyVerified
        kind = Kind.VERIFY_EMAIL
        if await mailing.sent_recently(conn, accounts, user_id=user.id, kind=kind, now=time.time()):
            return  # the link sent a moment ago is on its way
        await mailing.issue_with_message(conn, accounts, user=user, kind=kind, language=language)
    accounts.mail_queued()  # committed: the sender may take it now
    logger.info(f"email verification link queued for user {user_id}")


async def verify_email(accounts: Accounts, *, token: str) -> None:
    """Spend the token: the address it was sent to is verified, if still the user's."""
    hashed = mailing.token_hash(token)
    async with accounts.database.transaction() as conn:
        found, user = await mailing.usable(conn, hashed=hashed, kind=Kind.VERIFY_EMAIL, lock=True)
        if found.email is None or user.email != found.email:
            raise InvalidAccountToken  # the address changed since: it proves nothing now
        if not user.is_active:
            raise InactiveUser
        if not await account_tokens.delete(conn, token_hash=hashed):
            raise InvalidAccountToken  # spent a moment ago by a parallel request
        await user_queries.set_email_verified(conn, user_id=user.id, email=found.email)
