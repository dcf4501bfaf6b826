"""Email verification by link, and REQUIRE_VERIFIED_EMAIL, against a real SMTP server."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from service.app import create_app
from service.db import Database
from service.settings import Settings
from tests.conftest import ClientFactory
from tests.helpers import problem, validation_errors
from tests.helpers_auth import (
    BAD_LOGIN,
    Client,
    auth,
    login,
    make_user,
    signup,
    user_body,
    user_row,
)
from tests.mail_server import SmtpServer, link_token, smtp_server, text_part, wait_async

INVALID_TOKEN = "Invalid or expired token"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


async def app_client(
    aiohttp_client: ClientFactory, settings: Settings, smtp: SmtpServer, **changes: Any
) -> Client:
    configured = dataclasses.replace(settings, mail_url=smtp.url, mail_poll_seconds=0.05, **changes)
    return await aiohttp_client(create_app(configured))  # type: ignore[no-any-return]


async def verification_token(client: Client, headers: dict[str, str], smtp: SmtpServer) -> str:
    before = len(smtp.messages)
    response = await client.post("/users/me/verify-email", headers=headers)
    assert response.status == 202, await response.text()
    await wait_async(lambda: len(smtp.messages) > before, "the verification message")
    message = smtp.messages[-1]
    assert "/verify-email#token=" in text_part(message)
    return link_token(message)


async def verify(client: Client, token: str) -> Any:
    return await client.post("/verify-email", json={"token": token})


async def test_a_verification_link_verifies_the_address_once(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database, smtp: SmtpServer
) -> None:
    client = await app_client(aiohttp_client, migrated, smtp)
    user = await make_user(database, "alice", email="alice@example.com")
    headers = await auth(database, user.id)
    assert (await user_row(database, user.id) or {})["email_verified"] in (0, False)
    token = await verification_token(client, headers, smtp)
    assert smtp.messages[-1]["Subject"] == "Confirm your email address"
    assert (await verify(client, token)).status == 204
    assert (await user_row(database, user.id) or {})["email_verified"] in (1, True)
    await problem(await verify(client, token), 400, INVALID_TOKEN)
    again = await client.post("/users/me/verify-email", headers=headers)
    await problem(again, 409, "The email address is already verified")
    # The user representation is unchanged by the new column.
    await user_body(await client.get("/users/me", headers=headers))


async def test_no_address_is_a_409(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database, smtp: SmtpServer
) -> None:
    client = await app_client(aiohttp_client, migrated, smtp)
    user = await make_user(database, "bob")
    response = await client.post(
        "/users/me/verify-email", headers={**await auth(database, user.id), "Accept-Language": "ru"}
    )
    await problem(response, 409, "У учётной записи нет адреса электронной почты")
    await problem(await client.post("/users/me/verify-email"), 401)


async def test_changing_the_address_unverifies_it_and_kills_its_token(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database, smtp: SmtpServer
) -> None:
    client = await app_client(aiohttp_client, migrated, smtp)
    user = await make_user(database, "carol", email="carol@example.com")
    headers = await auth(database, user.id)
    first = await verification_token(client, headers, smtp)
    assert (await verify(client, first)).status == 204
    changed = await client.patch("/users/me", json={"email": "carol@new.example"}, headers=headers)
    assert changed.status == 200
    assert (await user_row(database, user.id) or {})["email_verified"] in (0, False)

    async with database.transaction() as conn:  # let the next message go at once
        await conn.execute("UPDATE account_tokens SET created_at = 0")
    stale = await verification_token(client, headers, smtp)
    assert smtp.messages[-1]["To"] == "carol@new.example"
    await client.patch("/users/me", json={"email": "carol@third.example"}, headers=headers)
    await problem(await verify(client, stale), 400, INVALID_TOKEN)
    assert (await user_row(database, user.id) or {})["email_verified"] in (0, False)


async def test_required_verification_refuses_unverified_logins_after_the_password(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database, smtp: SmtpServer
) -> None:
    client = await app_client(aiohttp_client, migrated, smtp, require_verified_email=True)
    await validation_errors(await signup(client, "nomail"), "email")
    created = await signup(client, "dave", email="dave@example.com")
    assert created.status == 201
    await problem(await login(client, "dave", "a wrong password"), 401, BAD_LOGIN)
    await problem(await login(client, "dave"), 403, "Email not verified")
    russian = await client.post(
        "/login/access-token",
        data={"username": "dave", "password": "correct horse battery"},
        headers={"Accept-Language": "ru"},
    )
    await problem(russian, 403, "Адрес электронной почты не подтверждён")

    user_id = (await user_body(created, 201))["id"]
    token = await verification_token(client, await auth(database, user_id), smtp)
    assert (await verify(client, token)).status == 204
    assert (await login(client, "dave")).status == 200
    # A superuser is never locked out (create-superuser gives no address).
    await make_user(database, "root", is_superuser=True)
    assert (await login(client, "root")).status == 200


async def test_without_the_requirement_unverified_users_log_in_as_before(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database, smtp: SmtpServer
) -> None:
    client = await app_client(aiohttp_client, migrated, smtp)
    assert (await signup(client, "erin")).status == 201
    assert (await login(client, "erin")).status == 200
