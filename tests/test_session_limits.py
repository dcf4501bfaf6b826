"""Bounded refresh storage per session, and an absolute session lifetime."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from service.app import create_app
from service.db import Database
from service.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.helpers import problem
from tests.helpers_auth import Client, login, make_user
from tests.log_hygiene import remember

ClientFactory = Callable[..., Any]
DAY = 86400


async def log_in(client: Client) -> dict[str, Any]:
    response = await login(client, "alice")
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    remember(body["refresh_token"], "a refresh token")
    return body


async def refresh(client: Client, token: str) -> Any:
    return await client.post("/login/refresh", json={"refresh_token": token})


def sid_of(body: dict[str, Any]) -> str:
    return str(jwt.decode(body["access_token"], TEST_SECRET_KEY, algorithms=["HS256"])["sid"])


async def spent_rows(database: Database, sid: str) -> int:
    async with database.read() as conn:
        rows = await conn.fetch_all(
            "SELECT count(*) FROM spent_refresh_tokens WHERE session_id = :id", {"id": sid}
        )
    return int(next(iter(rows))[0])


async def session_row(database: Database, sid: str) -> dict[str, Any]:
    async with database.read() as conn:
        rows = await conn.fetch_all("SELECT * FROM sessions WHERE id = :id", {"id": sid})
    return dict(next(iter(rows)))


async def age_session(database: Database, sid: str, days: float) -> None:
    """Pretend the session opened `days` ago."""
    opened = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - days * DAY))
    async with database.transaction() as conn:
        await conn.execute(
            "UPDATE sessions SET created_at = :at WHERE id = :id", {"at": opened, "id": sid}
        )


@pytest.mark.usefixtures("alice")
async def test_a_session_keeps_one_spent_refresh_token_however_often_it_rotates(
    client: Client, database: Database
) -> None:
    """The storage of a session does not grow with its refreshes; the token spent last,
    replayed, still ends the session (theft detection)."""
    body = await log_in(client)
    sid = sid_of(body)
    previous = body["refresh_token"]
    current = previous
    for _ in range(6):
        response = await refresh(client, current)
        assert response.status == 200, await response.text()
        renewed = (await response.json())["refresh_token"]
        previous, current = current, remember(renewed, "a refresh token")
    assert await spent_rows(database, sid) == 1
    await problem(await refresh(client, previous), 401)  # replay: the session ends
    await problem(await refresh(client, current), 401)


@pytest.mark.usefixtures("alice")
async def test_refresh_is_401_once_the_session_is_older_than_its_maximum_age(
    client: Client, database: Database, migrated: Settings
) -> None:
    """SESSION_MAX_AGE_DAYS (default 30): refreshing never keeps a session longer."""
    assert migrated.session_max_age_days == 30
    body = await log_in(client)
    await age_session(database, sid_of(body), 30.01)
    await problem(await refresh(client, body["refresh_token"]), 401)


@pytest.mark.usefixtures("alice")
async def test_a_refresh_near_the_maximum_age_expires_the_session_at_it(
    client: Client, database: Database
) -> None:
    body = await log_in(client)
    sid = sid_of(body)
    await age_session(database, sid, 29.5)
    response = await refresh(client, body["refresh_token"])
    assert response.status == 200, await response.text()
    remember((await response.json())["refresh_token"], "a refresh token")
    expires_at = (await session_row(database, sid))["expires_at"]
    assert expires_at <= time.time() + 0.5 * DAY + 5  # not REFRESH_TOKEN_EXPIRE_DAYS (14)


async def test_a_new_session_expires_no_later_than_the_maximum_age(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    short = dataclasses.replace(migrated, session_max_age_days=1.0)
    client: Client = await aiohttp_client(create_app(short))
    await make_user(database, "alice")
    before = time.time()
    sid = sid_of(await log_in(client))
    assert (await session_row(database, sid))["expires_at"] <= before + DAY + 5


@pytest.fixture
async def alice(database: Database) -> None:
    await make_user(database, "alice")
