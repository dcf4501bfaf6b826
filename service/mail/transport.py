"""Where mail goes, as MAIL_URL names it: an SMTP server, or a folder of .eml files.

`smtp://user:password@host:587` sends with STARTTLS, required unless `?starttls=off`;
`smtps://user:password@host:465` speaks TLS from the first byte; `file:./mail` (the
default) writes each message into that folder, readable by its owner only, so that a
fresh machine needs no mail server. The SMTP client is aiosmtplib; nothing here speaks
SMTP by hand.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib


class MailError(Exception):
    """The message was not handed over; the sender retries it later."""


@dataclass(frozen=True, slots=True)
class FileTransport:
    folder: Path

    async def send(self, message: EmailMessage, *, name: str, seconds: float) -> None:
        await asyncio.to_thread(self._write, message.as_bytes(), name)

    def _write(self, data: bytes, name: str) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = self.folder / f"{name}.eml"
        partial = self.folder / f".{name}.eml.partial"
        # Owner-only from creation (the message holds a live token), and renamed into
        # place whole: a reader never sees half a message.
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, final)


@dataclass(frozen=True, slots=True)
class SmtpTransport:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    async def send(self, message: EmailMessage, *, name: str, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await aiosmtplib.send(
                    message,
                    hostname=self.host,
                    port=self.port,
                    username=self.username,
                    password=self.password,
                    use_tls=self.implicit_tls,
                    # True: STARTTLS or no send at all (a server without it is an error).
                    start_tls=self.starttls,
                    timeout=seconds,
                )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise MailError(_describe(error)) from None


Transport = FileTransport | SmtpTransport


def parse_mail_url(url: str) -> Transport:
    """The transport MAIL_URL names; ValueError (without the password) if it names none."""
    if url.startswith("file:"):
        folder = url.removeprefix("file:").removeprefix("//")
        if not folder:
            raise ValueError("expected file:./folder or file:/absolute/folder")
        return FileTransport(Path(folder))
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(
            "expected smtp://[user:password@]host[:587][?starttls=off], "
            "smtps://[user:password@]host[:465] or file:./folder"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port is not a number") from None
    query = parse_qs(parts.query)
    starttls = query.get("starttls", ["on"])[-1].lower()
    if starttls not in ("on", "off") or set(query) - {"starttls"}:
        raise ValueError("the only option is ?starttls=off")
    implicit = parts.scheme == "smtps"
    return SmtpTransport(
        host=parts.hostname,
        port=port or (465 if implicit else 587),
        implicit_tls=implicit,
        starttls=starttls == "on" and not implicit,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _describe(error: BaseException) -> str:
    """What went wrong, for the outbox row and the log: the class and the server's words."""
    text = str(error).replace("\r", " ").replace("\n", " ")[:300]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
