"""Password recovery by email, end to end against a real SMTP server (aiosmtpd) in the test.

The app's own background sender delivers the outbox; the tests read the messages the
server received, follow their links' tokens, and check what a user would notice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.db import Database
from service.settings import Settings
from tests.conftest import ClientFactory, log_lines
from tests.helpers import problem, validation_errors
from tests.helpers_auth import (
    BAD_LOGIN,
    INACTIVE,
    PASSWORD,
    Client,
    bearer,
    login,
    login_token,
    make_user,
)
from tests.log_hygiene import remember
from tests.mail_server import (
    SmtpServer,
    eml_files,
    html_part,
    link_token,
    read_eml,
    smtp_server,
    text_part,
    wait_async,
)

NEW_PASSWORD = remember("a brand new password", "a new password")
INVALID_TOKEN = "Invalid or expired token"
PUBLIC_URL = "https://shop.example/app"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


def mail_settings(settings: Settings, smtp: SmtpServer, **changes: Any) -> Settings:
    """Settings that send through the test's SMTP server, polling and retrying quickly."""
    fast = {"mail_poll_seconds": 0.05, "mail_retry_seconds": 0.05}
    return dataclasses.replace(
        settings, mail_url=smtp.url, public_url=PUBLIC_URL, **{**fast, **changes}
    )


@pytest.fixture
async def mail_client(
    aiohttp_client: ClientFactory, migrated: Settings, smtp: SmtpServer
) -> TestClient:  # type: ignore[type-arg]
    return await aiohttp_client(create_app(mail_settings(migrated, smtp)))  # type: ignore[no-any-return]


async def outbox_rows(database: Database) -> list[dict[str, Any]]:
    async with database.read() as conn:
        rows = await conn.fetch_all("SELECT * FROM outbox ORDER BY id")
    return [dict(row) for row in rows]


async def recover(client: Client, email: str, **headers: str) -> Any:
    return await client.post("/password-recovery", json={"email": email}, headers=headers)


async def reset(client: Client, token: str, password: str = NEW_PASSWORD) -> Any:
    return await client.post("/reset-password", json={"token": token, "new_password": password})


async def one_message(smtp: SmtpServer, count: int = 1) -> Any:
    await wait_async(lambda: len(smtp.messages) >= count, f"{count} message(s)")
    return smtp.messages[count - 1]


async def test_a_reset_link_by_smtp_sets_a_new_password_and_ends_every_session(
    mail_client: Client, database: Database, smtp: SmtpServer
) -> None:
    """The whole flow: 202, one message with a link, 204, old sessions and password dead."""
    user = await make_user(database, "alice", email="alice@example.com")
    access = await login_token(mail_client, "alice")
    refresh = (await (await login(mail_client, "alice")).json())["refresh_token"]
    remember(refresh, "a refresh token")

    response = await recover(mail_client, "Alice@Example.COM")  # the case does not matter
    assert response.status == 202
    message = await one_message(smtp)
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "Reset your password"
    assert message["Message-ID"].startswith("<outbox-")
    token = link_token(message)
    assert f"{PUBLIC_URL}/reset-password#token={token}" in text_part(message)
    assert f'href="{PUBLIC_URL}/reset-password#token={token}"' in html_part(message)
    assert len(token) >= 43  # 256 random bits, URL-safe base64

    assert (await reset(mail_client, token)).status == 204
    await problem(await mail_client.get("/users/me", headers=bearer(access)), 401)
    refreshed = await mail_client.post("/login/refresh", json={"refresh_token": refresh})
    await problem(refreshed, 401)
    await problem(await login(mail_client, "alice"), 401, BAD_LOGIN)
    assert (await login(mail_client, "alice", NEW_PASSWORD)).status == 200
    # Works once.
    await problem(await reset(mail_client, token, "yet another password"), 400, INVALID_TOKEN)
    async with database.read() as conn:
        stored = await conn.fetch_all("SELECT token_hash FROM account_tokens")
    assert stored == []  # spent
    assert user.id > 0


async def test_the_answer_is_the_same_for_an_unknown_address_and_nothing_is_sent(
    mail_client: Client, database: Database, smtp: SmtpServer
) -> None:
    await make_user(database, "bob", email="bob@example.com")
    known = await recover(mail_client, "bob@example.com")
    unknown = await recover(mail_client, "nobody@example.com")
    assert known.status == unknown.status == 202
    assert await known.json() == await unknown.json()
    assert known.content_type == unknown.content_type == "application/json"
    await one_message(smtp)
    assert [row["recipient"] for row in await outbox_rows(database)] == ["bob@example.com"]


async def test_an_inactive_user_gets_no_message(
    mail_client: Client, database: Database, smtp: SmtpServer
) -> None:
    await make_user(database, "carol", email="carol@example.com", is_active=False)
    assert (await recover(mail_client, "carol@example.com")).status == 202
    assert await outbox_rows(database) == []


async def test_one_message_per_user_within_the_minimum_interval(
    mail_client: Client, database: Database, smtp: SmtpServer
) -> None:
    await make_user(database, "dave", email="dave@example.com")
    for _ in range(3):
        assert (await recover(mail_client, "dave@example.com")).status == 202
    assert len(await outbox_rows(database)) == 1


async def test_recovery_is_throttled_per_address_and_per_client(
    aiohttp_client: ClientFactory, migrated: Settings, smtp: SmtpServer
) -> None:
    settings = mail_settings(migrated, smtp, login_max_failures=2)
    client = await aiohttp_client(create_app(settings))
    for _ in range(2):
        assert (await recover(client, "erin@example.com")).status == 202
    body = await problem(await recover(client, "ERIN@example.com"), 429)
    assert body["detail"].startswith("Too many requests; try again in ")
    # The same client, any address: its own count is spent too.
    refused = await recover(client, "someone-else@example.com")
    await problem(refused, 429)
    assert int(refused.headers["Retry-After"]) > 0
    russian = await recover(client, "erin@example.com", **{"Accept-Language": "ru"})
    assert (await problem(russian, 429))["detail"].startswith("Слишком много запросов")


async def test_the_message_and_the_answer_follow_accept_language(
    mail_client: Client, database: Database, smtp: SmtpServer
) -> None:
    await make_user(database, "fedor", email="fedor@example.com")
    response = await recover(mail_client, "fedor@example.com", **{"Accept-Language": "ru, en"})
    assert response.status == 202
    assert (await response.json())["detail"].startswith("Если у активной учётной записи")
    assert response.headers["Content-Language"] == "ru"
    assert "Accept-Language" in response.headers["Vary"]
    message = await one_message(smtp)
    assert message["Subject"] == "Сброс пароля"
    assert "Здравствуйте, fedor!" in text_part(message)
    assert "Здравствуйте, fedor!" in html_part(message)
    assert 'lang="ru"' in html_part(message)


async def test_token_rules(mail_client: Client, database: Database, smtp: SmtpServer) -> None:
    """Stored as a hash only; unknown, malformed and expired tokens: 400; weak password: 422."""
    await make_user(database, "gina", email="gina@example.com")
    await recover(mail_client, "gina@example.com")
    token = link_token(await one_message(smtp))
    async with database.read() as conn:
        rows = [dict(r) for r in await conn.fetch_all("SELECT * FROM account_tokens")]
    assert [row["token_hash"] for row in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in str(rows)

    await validation_errors(await reset(mail_client, token, "short"), "new_password")
    for bad in ("x" * 43, "not a token!", "a\x00b", token + "x"):
        await problem(await reset(mail_client, bad), 400, INVALID_TOKEN)
    russian = await mail_client.post(
        "/reset-password",
        json={"token": "x" * 43, "new_password": NEW_PASSWORD},
        headers={"Accept-Language": "ru"},
    )
    await problem(russian, 400, "Недействительный или истёкший токен")

    async with database.transaction() as conn:
        await conn.execute("UPDATE account_tokens SET expires_at = :t", {"t": time.time() - 1})
    await problem(await reset(mail_client, token), 400, INVALID_TOKEN)
    assert (await login(mail_client, "gina")).status == 200  # the password is unchanged


async def test_a_token_dies_when_the_password_changes_another_way(
    mail_client: Client, database: Database, smtp: SmtpServer
) -> None:
    await make_user(database, "hugo", email="hugo@example.com")
    access = await login_token(mail_client, "hugo")
    await recover(mail_client, "hugo@example.com")
    token = link_token(await one_message(smtp))
    changed = await mail_client.patch(
        "/users/me/password",
        json={"current_password": PASSWORD, "new_password": "changed by hand"},
        headers=bearer(access),
    )
    assert changed.status == 204
    await problem(await reset(mail_client, token), 400, INVALID_TOKEN)


async def test_an_inactive_users_token_is_refused(
    mail_client: Client, database: Database, smtp: SmtpServer
) -> None:
    user = await make_user(database, "iris", email="iris@example.com")
    await recover(mail_client, "iris@example.com")
    token = link_token(await one_message(smtp))
    async with database.transaction() as conn:
        await conn.execute("UPDATE users SET is_active = FALSE WHERE id = :id", {"id": user.id})
    await problem(await reset(mail_client, token), 400, INACTIVE)


async def test_no_token_reaches_the_log(
    mail_client: Client, database: Database, smtp: SmtpServer, migrated: Settings
) -> None:
    user = await make_user(database, "jack", email="jack@example.com")
    await recover(mail_client, "jack@example.com")
    token = link_token(await one_message(smtp))
    assert (await reset(mail_client, token)).status == 204
    lines = log_lines(migrated)
    assert any(f"password reset link queued for user {user.id}" in line for line in lines)
    assert any(f"password of user {user.id} reset" in line for line in lines)
    assert not [line for line in lines if token in line]


async def test_a_sent_message_keeps_no_link_in_the_outbox(
    mail_client: Client, database: Database, smtp: SmtpServer
) -> None:
    await make_user(database, "kate", email="kate@example.com")
    await recover(mail_client, "kate@example.com")
    token = link_token(await one_message(smtp))

    async def sent() -> list[dict[str, Any]]:
        return [row for row in await outbox_rows(database) if row["status"] == "sent"]

    deadline = time.monotonic() + 30
    while not await sent() and time.monotonic() < deadline:
        await wait_async(lambda: True, "a pause", 0.1)
    (row,) = await sent()
    assert row["attempts"] == 1
    assert row["body_text"] == row["body_html"] == ""
    assert token not in str(row)


async def test_the_process_that_queued_a_message_sends_it_without_waiting_for_its_poll(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database, smtp: SmtpServer
) -> None:
    settings = mail_settings(migrated, smtp, mail_poll_seconds=3600.0)
    client = await aiohttp_client(create_app(settings))
    await make_user(database, "lena", email="lena@example.com")
    assert (await recover(client, "lena@example.com")).status == 202
    assert (await one_message(smtp))["To"] == "lena@example.com"


async def test_the_embedded_file_transport_holds_a_link_grep_can_read(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database, tmp_path: Path
) -> None:
    """The README's flow: the token read from the raw .eml bytes (no quoted-printable)."""
    folder = tmp_path / "mail"
    settings = dataclasses.replace(migrated, mail_url=f"file:{folder}", mail_poll_seconds=0.05)
    client = await aiohttp_client(create_app(settings))
    await make_user(database, "mila", email="mila@example.com")
    await make_user(database, "nina", email="nina@example.com")
    await recover(client, "mila@example.com")
    await recover(client, "nina@example.com", **{"Accept-Language": "ru"})
    await wait_async(lambda: len(eml_files(folder)) == 2, "two .eml files")
    for path in eml_files(folder):
        raw = path.read_text(encoding="utf-8")
        found = re.findall(r"reset-password#token=([A-Za-z0-9_-]+)", raw)
        # Verbatim in the text part, and twice in the HTML part (the href and its text).
        assert len(found) == 3, raw
        assert set(found) == {link_token(read_eml(path))}
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = re.findall(r"#token=([A-Za-z0-9_-]+)", eml_files(folder)[0].read_text("utf-8"))[0]
    assert (await reset(client, remember(token, "a reset token"))).status == 204
