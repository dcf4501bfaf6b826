"""Login sessions: open one, refresh it (rotation, theft detection), list and end them.

A session is what an access token names (`sid`) and what its refresh token renews. The
refresh token rotates on every use; the one spent just before the current one, presented
again, means it was stolen, and its whole session ends for everyone. A refresh renews the
session for REFRESH_TOKEN_EXPIRE_DAYS, but never past SESSION_MAX_AGE_DAYS after it
opened: then the user logs in again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from loguru import logger

from service import tokens
from service.accounts.context import Accounts, Caller
from service.accounts.errors import InactiveUser, InvalidRefreshToken, SessionNotFound
from service.db import Connection
from service.ids import is_token_id
from service.queries import sessions
from service.queries import users as user_queries
from service.queries.sessions import Session
from service.queries.users import User

_MAX_USER_AGENT = 256


@dataclass(frozen=True, slots=True)
class Tokens:
    """What a login or a refresh hands the client."""

    access_token: str
    expires_in: int
    refresh_token: str


@dataclass(frozen=True, slots=True)
class OpenedSession:
    id: str
    refresh_token: str


async def open_session(
    conn: Connection, accounts: Accounts, *, user: User, caller: Caller
) -> OpenedSession:
    """Open a session for `user` in the caller's unit of work (UserGone if he was deleted)."""
    opened = OpenedSession(id=tokens.new_session_id(), refresh_token=tokens.new_refresh_token())
    await sessions.create_session(
        conn,
        session_id=opened.id,
        user_id=user.id,
        refresh_token_hash=tokens.token_digest(opened.refresh_token),
        expires_at=_refresh_expiry(accounts, started_at=time.time()),
        user_agent=_printable(caller.user_agent)[:_MAX_USER_AGENT] or None,
        client=caller.address,
    )
    return opened


def issue_tokens(accounts: Accounts, *, user: User, session: OpenedSession) -> Tokens:
    """A new access token for the user's session, with the session's refresh token."""
    issued = tokens.issue(
        user_id=user.id,
        token_version=user.token_version,
        session_id=session.id,
        key=accounts.token_key,
        lifetime_seconds=accounts.settings.access_token_expire_minutes * 60,
    )
    return Tokens(issued.token, issued.expires_in, session.refresh_token)


async def refresh(accounts: Accounts, *, refresh_token: str) -> Tokens:
    """Spend `refresh_token` for new tokens of its session; a replayed one ends the session."""
    if not tokens.is_refresh_token_shaped(refresh_token):
        raise InvalidRefreshToken  # no token of ours: refused like an unknown one
    token_hash = tokens.token_digest(refresh_token)
    renewed: OpenedSession | None = None
    user: User | None = None
    async with accounts.database.transaction() as conn:
        session = await sessions.by_refresh_hash(conn, token_hash=token_hash)
        if session is None:
            await _end_session_if_replayed(conn, token_hash)
        elif session.is_open(time.time()) and not _too_old(accounts, session):
            user = await user_queries.get_by_id(conn, user_id=session.user_id)
            if user is not None and user.is_active:
                renewed = OpenedSession(id=session.id, refresh_token=tokens.new_refresh_token())
                rotated = await sessions.rotate(
                    conn,
                    session_id=session.id,
                    old_hash=token_hash,
                    new_hash=tokens.token_digest(renewed.refresh_token),
                    expires_at=_refresh_expiry(accounts, started_at=session.started_at),
                )
                if not rotated:  # not current any more: never spend a token twice
                    user = None
    # Raised after the unit of work, so that ending a replayed session is committed.
    if user is None:
        raise InvalidRefreshToken
    if renewed is None:
        raise InactiveUser
    return issue_tokens(accounts, user=user, session=renewed)


async def _end_session_if_replayed(conn: Connection, token_hash: str) -> None:
    """A spent refresh token presented again means theft: end its session for everyone."""
    replayed = await sessions.session_of_spent_token(conn, token_hash=token_hash)
    if replayed is not None:
        await sessions.end_session_by_id(conn, session_id=replayed)
        logger.warning("a spent refresh token was presented again; its session ended")


async def list_open(accounts: Accounts, *, user_id: int) -> list[Session]:
    """The user's sessions that are neither ended nor expired, oldest first."""
    async with accounts.database.read() as conn:
        return await sessions.list_open(conn, user_id=user_id, now=time.time())


async def log_out(accounts: Accounts, *, user_id: int, session_id: str) -> None:
    """End the caller's current session (already ended by a race: nothing to do)."""
    async with accounts.database.transaction() as conn:
        await sessions.end_session(conn, session_id=session_id, user_id=user_id, now=time.time())


async def end_session(accounts: Accounts, *, user_id: int, session_id: str) -> None:
    """End one of the user's open sessions, named from his sessions list."""
    if not is_token_id(session_id):  # a NUL, say: no session has such an id
        raise SessionNotFound
    async with accounts.database.transaction() as conn:
        ended = await sessions.end_session(
            conn, session_id=session_id, user_id=user_id, now=time.time()
        )
    if not ended:
        raise SessionNotFound


async def end_other_sessions(accounts: Accounts, *, user_id: int, keep: str) -> None:
    """End every session of the user except `keep` (the caller's own)."""
    async with accounts.database.transaction() as conn:
        await sessions.end_user_sessions(conn, user_id=user_id, keep=keep)


def _refresh_expiry(accounts: Accounts, *, started_at: float) -> float:
    """REFRESH_TOKEN_EXPIRE_DAYS from now, but no later than the session's maximum age."""
    settings = accounts.settings
    renewed = time.time() + settings.refresh_token_expire_days * 86400
    return min(renewed, started_at + settings.session_max_age_days * 86400)


def _too_old(accounts: Accounts, session: Session) -> bool:
    """Past SESSION_MAX_AGE_DAYS (set lower since the session's expiry was last renewed)."""
    return time.time() >= session.started_at + accounts.settings.session_max_age_days * 86400


def _printable(header: str) -> str:
    """A header as text we can store: aiohttp keeps undecodable bytes as lone surrogates."""
    return header.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
