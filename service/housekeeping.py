"""Background purge: ended and expired sessions, passed login-failure windows, expired
reset and verification tokens and second-factor challenges, and outbox messages sent or
failed MAIL_RETENTION_DAYS ago.

Each run deletes a bounded batch (so the write lock is never held long) and repeats
every SESSION_PURGE_INTERVAL_SECONDS; ended or expired sessions are therefore gone
within one interval, and their spent refresh-token hash (one a session) with them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from aiohttp import web
from loguru import logger

from service import keys
from service.queries import account_tokens, login_failures, mfa_challenges, outbox, sessions

BATCH = 1000


async def purge_periodically(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: run `purge_once` every interval until the app stops."""
    task = asyncio.create_task(_loop(app))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def purge_once(app: web.Application) -> int:
    """Delete one batch of each kind of finished row; return how many sessions went."""
    settings = app[keys.SETTINGS]
    now = time.time()
    async with app[keys.DATABASE].transaction() as conn:
        purged = await sessions.purge(conn, now=now, limit=BATCH)
        await login_failures.purge_expired(
            conn, now=now, window=settings.login_failure_window_seconds
        )
        await account_tokens.purge(conn, now=now, limit=BATCH)
        await mfa_challenges.purge(conn, now=now, limit=BATCH)
        await outbox.purge(conn, before=now - settings.mail_retention_days * 86400, limit=BATCH)
    return purged


async def _loop(app: web.Application) -> None:
    interval = app[keys.SETTINGS].session_purge_interval_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            await purge_once(app)
        except Exception:  # keep purging on the next round; the error is logged
            logger.opt(exception=True).error("session purge failed")
