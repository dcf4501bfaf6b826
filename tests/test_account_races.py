"""A login or refresh in flight while the account changes: no session outlives the change."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from service import keys
from service.db import Database
from tests.helpers import problem
from tests.helpers_auth import BAD_LOGIN, PASSWORD, Client, auth, login, make_user
from tests.log_hygiene import remember

NEW_PASSWORD = "a brand new passphrase"


def hold_the_first_verify(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Event, asyncio.Event]:
    """Stop the first password verification after the hash, until `release` is set.

    Returns (verified, release): `verified` is set once the first hash is checked.
    """
    assert client.app is not None
    hasher = client.app[keys.ACCOUNTS].passwords
    original = hasher.verify
    verified, release = asyncio.Event(), asyncio.Event()

    async def verify(password: str, hashed: str | None) -> tuple[bool, str | None]:
        result = await original(password, hashed)
        if not verified.is_set():
            verified.set()
            await release.wait()
        return result

    monkeypatch.setattr(hasher, "verify", verify)
    return verified, release


async def open_sessions(database: Database, user_id: int) -> list[str]:
    async with database.read() as conn:
        rows = await conn.fetch_all(
            "SELECT id FROM sessions WHERE user_id = :id AND ended_at IS NULL", {"id": user_id}
        )
    return [row["id"] for row in rows]


async def change_own_password(client: Client, database: Database, user_id: int) -> None:
    response = await client.patch(
        "/users/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=await auth(database, user_id),
    )
    assert response.status == 204, await response.text()


async def reset_by_superuser(client: Client, database: Database, user_id: int) -> None:
    root = await make_user(database, "root", is_superuser=True)
    response = await client.patch(
        f"/users/{user_id}", json={"password": NEW_PASSWORD}, headers=await auth(database, root.id)
    )
    assert response.status == 200, await response.text()


async def deactivate(client: Client, database: Database, user_id: int) -> None:
    root = await make_user(database, "root", is_superuser=True)
    response = await client.patch(
        f"/users/{user_id}", json={"is_active": False}, headers=await auth(database, root.id)
    )
    assert response.status == 200, await response.text()


Change = Callable[[Client, Database, int], Awaitable[None]]


@pytest.mark.parametrize("change", [change_own_password, reset_by_superuser, deactivate])
async def test_a_login_in_flight_during_a_password_change_or_deactivation_opens_no_session(
    client: Client, database: Database, monkeypatch: pytest.MonkeyPatch, change: Change
) -> None:
    """The old password was right when verified; the change committed before the session
    would open: 401 as for a wrong password, and no session the change did not end."""
    alice = await make_user(database, "alice")
    before = set(await open_sessions(database, alice.id))
    verified, release = hold_the_first_verify(client, monkeypatch)
    attempt: asyncio.Task[Any] = asyncio.create_task(login(client, "alice", PASSWORD))
    await asyncio.wait_for(verified.wait(), 30)
    await change(client, database, alice.id)
    still_open = set(await open_sessions(database, alice.id))
    release.set()
    await problem(await attempt, 401, BAD_LOGIN)
    assert set(await open_sessions(database, alice.id)) == still_open
    assert still_open <= before


async def test_a_login_verified_before_the_change_and_finished_before_it_is_ended_by_it(
    client: Client, database: Database
) -> None:
    """The other order: the session opened first, so the password change ends it."""
    alice = await make_user(database, "alice")
    body = await (await login(client, "alice", PASSWORD)).json()
    await change_own_password(client, database, alice.id)
    refreshed = await client.post("/login/refresh", json={"refresh_token": body["refresh_token"]})
    await problem(refreshed, 401)


async def test_a_refresh_after_a_password_change_is_refused(
    client: Client, database: Database
) -> None:
    """Refresh reads the session and the user in the unit of work that rotates the token."""
    alice = await make_user(database, "alice")
    body = await (await login(client, "alice", PASSWORD)).json()
    root = await make_user(database, "root", is_superuser=True)
    reset = await client.patch(
        f"/users/{alice.id}", json={"password": NEW_PASSWORD}, headers=await auth(database, root.id)
    )
    assert reset.status == 200
    refreshed = await client.post("/login/refresh", json={"refresh_token": body["refresh_token"]})
    await problem(refreshed, 401)


async def test_parallel_logins_upgrading_a_stale_hash_all_succeed(
    client: Client, database: Database
) -> None:
    """The first upgrade replaces the hash the others verified: they are not refused for it."""
    stale = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8192),)).hash(PASSWORD)
    await make_user(database, "alice", hashed_password=stale)
    responses = await asyncio.gather(*(login(client, "alice", PASSWORD) for _ in range(3)))
    assert [response.status for response in responses] == [200, 200, 200]
    for response in responses:
        remember((await response.json())["refresh_token"], "a refresh token")
