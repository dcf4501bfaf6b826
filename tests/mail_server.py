"""A real SMTP server inside the test process (aiosmtpd), and reading what it received.

`SmtpServer` runs aiosmtpd's controller on a free port in its own thread. Its handler
keeps every message it accepts; it can refuse the next few (`refuse`, a 451 as a busy
server answers) or hold every DATA until released (`hold`), as a server that hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from tests.helpers_process import free_port
from tests.log_hygiene import remember

_TOKEN_IN_LINK = re.compile(r"#token=([A-Za-z0-9_-]+)")


class Inbox:
    """aiosmtpd's handler: what it accepted, and how it answers the next DATA."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse = 0  # the next N messages get 451
        self.refused = 0
        self.held = threading.Event()  # set: every DATA waits until cleared, then 451
        self.arrived = 0  # DATA commands begun, held or not
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.arrived += 1
        while self.held.is_set():
            await asyncio.sleep(0.05)
            if not self.held.is_set():
                return "451 4.3.0 held, try again"
        with self.lock:
            if self.refuse > 0:
                self.refuse -= 1
                self.refused += 1
                return "451 4.3.0 busy, try again later"
            parsed = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            self.messages.append(parsed)
        return "250 OK"


class SmtpServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.inbox = Inbox()
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        """MAIL_URL for this server: plain SMTP (a test server has no certificate)."""
        return f"smtp://127.0.0.1:{self.port}?starttls=off"

    @property
    def messages(self) -> list[EmailMessage]:
        with self.inbox.lock:
            return list(self.inbox.messages)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@contextlib.contextmanager
def smtp_server(port: int | None = None) -> Iterator[SmtpServer]:
    server = SmtpServer(port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    """Poll until `condition()` holds; fail saying `what` was awaited if it never does."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


async def wait_async(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    """`wait_for` inside a test's event loop (the app's sender runs there)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


def text_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, message
    return str(part.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]


def html_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None, message
    return str(part.get_content())  # type: ignore[attr-defined]


def link_token(message: EmailMessage) -> str:
    """The token of the message's link (remembered: it must never reach a log)."""
    match = _TOKEN_IN_LINK.search(text_part(message))
    assert match is not None, text_part(message)
    return remember(match.group(1), "a reset or verification token")


def eml_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.eml")) if folder.exists() else []


def read_eml(path: Path) -> EmailMessage:
    parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed
