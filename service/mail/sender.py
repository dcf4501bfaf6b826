"""The outbox's background sender, on every node and worker process.

Every MAIL_POLL_SECONDS, and at once when its own process queued mail, it looks for due
messages (a read, no lock), claims a batch in one unit of work (on PostgreSQL with FOR
UPDATE SKIP LOCKED, so two senders never claim one message), sends each through
MAIL_URL's transport, and marks it sent. A failure is retried after MAIL_RETRY_SECONDS,
doubling each time (at most an hour apart), until MAIL_MAX_ATTEMPTS, then the message is
marked failed with a warning. A claim is a lease: a sender killed mid-send leaves its
message to be claimed again once the lease runs out, so delivery is at least once (a
crash after the server took a message and before it was marked sent sends it twice; its
Message-ID stays the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from aiohttp import web
from loguru import logger

from service import keys
from service.db import Database
from service.mail.transport import MailError, Transport, parse_mail_url
from service.queries import outbox
from service.queries.outbox import Outgoing
from service.settings import Settings

BATCH = 20
_MAX_DELAY = 3600.0


async def send_periodically(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: deliver the outbox until the app stops.

    On the way out a send in progress may finish (for up to MAIL_TIMEOUT_SECONDS), so it
    is marked sent rather than sent again after its lease, and its connection closes.
    """
    settings, queued, stopping = app[keys.SETTINGS], app[keys.MAIL_QUEUED], asyncio.Event()
    task = asyncio.create_task(_loop(app[keys.DATABASE], settings, queued, stopping))
    yield
    stopping.set()
    queued.set()  # out of its wait for the next poll
    try:
        await asyncio.wait_for(asyncio.shield(task), settings.mail_timeout_seconds + 5)
    except TimeoutError:
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def deliver_due(database: Database, settings: Settings) -> int:
    """Claim and send one batch of due messages; return how many were claimed."""
    now = time.time()
    async with database.read() as conn:
        if not await outbox.any_due(conn, now=now):
            return 0
    async with database.transaction() as conn:
        claimed = await outbox.claim_due(
            conn, now=now, lease_until=now + lease_seconds(settings), limit=BATCH
        )
    transport = parse_mail_url(settings.mail_url)
    for message in claimed:
        await _deliver(database, settings, transport, message)
    return len(claimed)


def lease_seconds(settings: Settings) -> float:
    """How long a claim holds: past the send's own timeout, with room to mark it sent."""
    return 2 * settings.mail_timeout_seconds + 5


def retry_delay(settings: Settings, attempts: int) -> float:
    """The wait after failed attempt number `attempts`: doubling, at most an hour."""
    return float(min(settings.mail_retry_seconds * 2 ** (attempts - 1), _MAX_DELAY))


def email_message(settings: Settings, message: Outgoing) -> EmailMessage:
    """The outbox row as a MIME message: text, with an HTML alternative."""
    email = EmailMessage()
    email["From"] = settings.mail_from
    email["To"] = message.recipient
    email["Subject"] = message.subject
    email["Date"] = formatdate(localtime=False, usegmt=True)
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
    # The same for every attempt: a receiver can drop the copy an at-least-once retry sends.
    email["Message-ID"] = f"<outbox-{message.id}.{_stamp(message.created_at)}@{domain}>"
    # Never quoted-printable: it would break the link (`=` becomes `=3D`, long lines are
    # cut), and the link must stay readable in a .eml file (README: grep it out).
    email.set_content(message.body_text, cte=_plain_encoding(message.body_text))
    email.add_alternative(message.body_html, subtype="html", cte=_plain_encoding(message.body_html))
    return email


def _plain_encoding(text: str) -> str:
    return "7bit" if text.isascii() else "8bit"


async def _deliver(
    database: Database, settings: Settings, transport: Transport, message: Outgoing
) -> None:
    try:
        await transport.send(
            email_message(settings, message),
            name=f"{message.id:08d}-{message.kind}",
            seconds=settings.mail_timeout_seconds,
        )
    except MailError as error:
        await _failed(database, settings, message, str(error))
        return
    except Exception as error:  # whatever broke this send, it counts as a failed attempt
        await _failed(database, settings, message, f"{type(error).__name__}: {error}"[:300])
        return
    async with database.transaction() as conn:
        await outbox.mark_sent(
            conn, message_id=message.id, attempts=message.attempts, now=time.time()
        )
    logger.info(f"mail {message.id} ({message.kind}) sent")


async def _failed(database: Database, settings: Settings, message: Outgoing, error: str) -> None:
    now = time.time()
    async with database.transaction() as conn:
        if message.attempts >= settings.mail_max_attempts:
            await outbox.mark_failed(
                conn, message_id=message.id, attempts=message.attempts, now=now, error=error
            )
            logger.warning(
                f"mail {message.id} ({message.kind}) failed after {message.attempts} "
                f"attempts, given up: {error}"
            )
            return
        delay = retry_delay(settings, message.attempts)
        await outbox.retry_later(
            conn,
            message_id=message.id,
            attempts=message.attempts,
            next_attempt_at=now + delay,
            error=error,
        )
    logger.info(
        f"mail {message.id} ({message.kind}) attempt {message.attempts} failed, "
        f"retried in {delay:.0f} s: {error}"
    )


def _stamp(created_at: str) -> str:
    return "".join(ch for ch in created_at if ch.isdigit())


async def _loop(
    database: Database, settings: Settings, queued: asyncio.Event, stopping: asyncio.Event
) -> None:
    while not stopping.is_set():
        queued.clear()
        try:
            while await deliver_due(database, settings) == BATCH and not stopping.is_set():
                pass  # a full batch: more may be due
        except Exception:  # keep sending on the next round; the error is logged
            logger.opt(exception=True).error("mail sender failed")
        # Mail queued by this process wakes it at once; other processes' at the next poll.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(queued.wait(), settings.mail_poll_seconds)
