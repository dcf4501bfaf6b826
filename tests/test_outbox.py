"""The outbox's delivery: retries, a server that is down, giving up, purging, transports.

The sender's functions are driven directly (one round at a time) against a real SMTP
server in the test process, on the test's database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from service import housekeeping
from service.db import Database, open_database
from service.mail import sender
from service.mail.transport import FileTransport, SmtpTransport, parse_mail_url
from service.queries import outbox
from service.settings import Settings, SettingsError
from tests.helpers_process import free_port
from tests.mail_server import (
    SmtpServer,
    eml_files,
    html_part,
    read_eml,
    smtp_server,
    text_part,
)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="WARNING")
    yield lines
    logger.remove(sink)


def configured(settings: Settings, mail_url: str, **changes: Any) -> Settings:
    changes.setdefault("mail_retry_seconds", 0.01)
    return dataclasses.replace(settings, mail_url=mail_url, **changes)


async def queue(database: Database, count: int = 1, recipient: str = "to@example.com") -> None:
    async with database.transaction() as conn:
        for number in range(count):
            await outbox.queue(
                conn,
                kind="reset_password",
                recipient=recipient,
                subject=f"Message {number}",
                body_text=f"text {number}\n",
                body_html=f"<p>html {number}</p>",
                now=time.time(),
            )


async def rows(database: Database) -> list[dict[str, Any]]:
    async with database.read() as conn:
        return [dict(r) for r in await conn.fetch_all("SELECT * FROM outbox ORDER BY id")]


async def make_due(database: Database) -> None:
    """Skip the retry delay: the test drives the rounds, not the clock."""
    async with database.transaction() as conn:
        await conn.execute("UPDATE outbox SET next_attempt_at = 0 WHERE status = 'pending'")


async def test_a_refused_message_is_retried_and_then_sent(
    migrated: Settings, database: Database, smtp: SmtpServer
) -> None:
    settings = configured(migrated, smtp.url)
    smtp.inbox.refuse = 1
    await queue(database)
    assert await sender.deliver_due(database, settings) == 1
    (row,) = await rows(database)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert "451" in row["last_error"]
    assert smtp.messages == []
    await make_due(database)
    assert await sender.deliver_due(database, settings) == 1
    (row,) = await rows(database)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)
    (message,) = smtp.messages
    assert message["Subject"] == "Message 0"
    assert text_part(message) == "text 0\n"
    assert "<p>html 0</p>" in html_part(message)
    assert message["From"] == settings.mail_from


async def test_nothing_is_lost_while_the_server_is_down(
    migrated: Settings, database: Database
) -> None:
    port = free_port()
    settings = configured(migrated, f"smtp://127.0.0.1:{port}?starttls=off")
    await queue(database, 3)
    await sender.deliver_due(database, settings)
    assert {(r["status"], r["attempts"]) for r in await rows(database)} == {("pending", 1)}
    assert all(r["last_error"] for r in await rows(database))
    with smtp_server(port) as smtp:  # the server comes back
        await make_due(database)
        await sender.deliver_due(database, settings)
        assert sorted(m["Subject"] for m in smtp.messages) == [
            "Message 0",
            "Message 1",
            "Message 2",
        ]
    assert {r["status"] for r in await rows(database)} == {"sent"}


async def test_retries_wait_longer_each_time(migrated: Settings, database: Database) -> None:
    settings = configured(
        migrated, f"smtp://127.0.0.1:{free_port()}?starttls=off", mail_retry_seconds=30.0
    )
    assert [sender.retry_delay(settings, n) for n in (1, 2, 3, 8, 20)] == [
        30.0,
        60.0,
        120.0,
        3600.0,
        3600.0,
    ]
    await queue(database)
    before = time.time()
    await sender.deliver_due(database, settings)
    (row,) = await rows(database)
    assert row["next_attempt_at"] >= before + 30


async def test_a_message_is_given_up_after_the_last_attempt_with_a_warning(
    migrated: Settings, database: Database, warnings: list[str]
) -> None:
    settings = configured(
        migrated, f"smtp://127.0.0.1:{free_port()}?starttls=off", mail_max_attempts=2
    )
    await queue(database)
    await sender.deliver_due(database, settings)
    await make_due(database)
    await sender.deliver_due(database, settings)
    (row,) = await rows(database)
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert row["body_text"] == row["body_html"] == ""  # no link outlives the message
    assert row["finished_at"] is not None
    (line,) = [w for w in warnings if f"mail {row['id']}" in w]
    assert "failed after 2 attempts, given up" in line
    await make_due(database)
    assert await sender.deliver_due(database, settings) == 0  # never tried again


async def test_starttls_is_required_unless_switched_off(
    migrated: Settings, database: Database, smtp: SmtpServer
) -> None:
    settings = configured(migrated, f"smtp://127.0.0.1:{smtp.port}")  # no ?starttls=off
    await queue(database)
    await sender.deliver_due(database, settings)
    (row,) = await rows(database)
    assert row["status"] == "pending"
    assert "STARTTLS" in row["last_error"]
    assert smtp.messages == []  # never sent in the clear


async def test_a_claim_is_a_lease_and_a_later_claim_wins(
    migrated: Settings, database: Database, smtp: SmtpServer
) -> None:
    """A sender that died mid-send leaves its message to the next one after the lease."""
    await queue(database)
    now = time.time()
    async with database.transaction() as conn:
        (first,) = await outbox.claim_due(conn, now=now, lease_until=now + 60, limit=5)
    async with database.transaction() as conn:  # within the lease: nobody else takes it
        assert await outbox.claim_due(conn, now=now + 1, lease_until=now + 61, limit=5) == []
    async with database.transaction() as conn:  # after it: the next sender does
        (second,) = await outbox.claim_due(conn, now=now + 61, lease_until=now + 121, limit=5)
    assert (first.attempts, second.attempts) == (1, 2)
    async with database.transaction() as conn:
        assert not await outbox.mark_sent(conn, message_id=first.id, attempts=1, now=now)
        assert await outbox.mark_sent(conn, message_id=second.id, attempts=2, now=now)


@pytest.fixture
async def second_node(migrated: Settings) -> AsyncIterator[Database]:
    """Another handle on the same database, as another node or worker process has."""
    db = await open_database(migrated)
    yield db
    await db.close()


async def test_two_senders_at_once_send_each_message_once(
    migrated: Settings, database: Database, second_node: Database, smtp: SmtpServer
) -> None:
    settings = configured(migrated, smtp.url)
    await queue(database, 60)
    for _ in range(5):
        await asyncio.gather(
            sender.deliver_due(database, settings), sender.deliver_due(second_node, settings)
        )
    subjects = [m["Subject"] for m in smtp.messages]
    assert sorted(subjects) == sorted(f"Message {n}" for n in range(60))
    assert len(set(m["Message-ID"] for m in smtp.messages)) == 60
    assert {(r["status"], r["attempts"]) for r in await rows(database)} == {("sent", 1)}


async def test_finished_messages_and_expired_tokens_are_purged_after_retention(
    migrated: Settings, database: Database, smtp: SmtpServer, aiohttp_client: Any
) -> None:
    from service.app import create_app

    settings = configured(migrated, smtp.url, mail_retention_days=1.0)
    await queue(database, 3)
    await sender.deliver_due(database, settings)  # all three sent
    await queue(database)  # a fourth, still pending
    async with database.transaction() as conn:
        await conn.execute(
            "UPDATE outbox SET finished_at = :old WHERE id IN (1, 2)",
            {"old": time.time() - 86400 - 10},
        )
        # Not due yet: the app's own sender, running beside the purge, leaves it pending.
        await conn.execute(
            "UPDATE outbox SET next_attempt_at = :later WHERE id = 4", {"later": time.time() + 3600}
        )
        await conn.execute(
            "INSERT INTO account_tokens (token_hash, purpose, user_id, token_version, email,"
            " created_at, expires_at) SELECT 'h' || id, 'reset_password', id, 1, NULL, 0, 1"
            " FROM users"
        )
    client = await aiohttp_client(create_app(settings))
    await housekeeping.purge_once(client.app)
    assert [(r["id"], r["status"]) for r in await rows(database)] == [(3, "sent"), (4, "pending")]
    async with database.read() as conn:
        assert await conn.fetch_all("SELECT * FROM account_tokens") == []


async def test_the_file_transport_writes_owner_only_eml_files(
    migrated: Settings, database: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "outgoing" / "mail"
    settings = configured(migrated, f"file:{folder}")
    await queue(database, 2)
    await sender.deliver_due(database, settings)
    files = eml_files(folder)
    assert [f.name for f in files] == ["00000001-reset_password.eml", "00000002-reset_password.eml"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
    message = read_eml(files[0])
    assert message["To"] == "to@example.com"
    assert text_part(message) == "text 0\n"
    assert [f.name for f in folder.iterdir() if f.name.startswith(".")] == []
    assert {r["status"] for r in await rows(database)} == {"sent"}


def test_mail_url_names_a_transport() -> None:
    assert Settings().mail_url == "file:./mail"
    assert parse_mail_url("file:./mail") == FileTransport(Path("mail"))
    smtp = parse_mail_url("smtp://user%40x:p%3Ass@mail.example:2525")
    assert smtp == SmtpTransport("mail.example", 2525, False, True, "user@x", "p:ss")
    assert parse_mail_url("smtp://mail.example?starttls=off") == SmtpTransport(
        "mail.example", 587, False, False
    )
    assert parse_mail_url("smtps://mail.example") == SmtpTransport("mail.example", 465, True, False)
    assert "p:ss" not in repr(smtp)


@pytest.mark.parametrize(
    "raw", ["http://mail.example", "smtp://", "smtp://h?tls=1", "smtp://h:x", "file:", "mail"]
)
def test_a_bad_mail_url_stops_the_start_without_echoing_it(raw: str) -> None:
    with pytest.raises(SettingsError, match="MAIL_URL is not valid") as error:
        Settings.from_env({"MAIL_URL": raw.replace("//", "//u:secret-pw@", 1)})
    assert "secret-pw" not in str(error.value)


def test_recovery_settings_are_read_and_checked() -> None:
    settings = Settings.from_env(
        {
            "PUBLIC_URL": "https://shop.example/",
            "REQUIRE_VERIFIED_EMAIL": "yes",
            "RESET_TOKEN_EXPIRE_MINUTES": "15",
            "MAIL_MAX_ATTEMPTS": "3",
            "MAIL_FROM": "Shop <shop@example.com>",
        }
    )
    assert settings.public_url == "https://shop.example"
    assert settings.require_verified_email
    assert (settings.reset_token_expire_minutes, settings.mail_max_attempts) == (15, 3)
    for name, value in [
        ("PUBLIC_URL", "shop.example"),
        ("MAIL_FROM", "no address"),
        ("MAIL_MAX_ATTEMPTS", "0"),
    ]:
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})


async def test_a_transport_that_breaks_unexpectedly_counts_as_a_failed_attempt(
    migrated: Settings, database: Database, tmp_path: Path, warnings: list[str]
) -> None:
    """A folder that cannot be made (a file is in the way): failed, not stuck as claimed."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("in the way")
    settings = configured(migrated, f"file:{blocker}", mail_max_attempts=1)
    await queue(database)
    await sender.deliver_due(database, settings)
    (row,) = await rows(database)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["last_error"].startswith("FileExistsError")
    assert [w for w in warnings if "given up" in w]
