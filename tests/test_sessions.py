"""Sessions: refresh-token rotation and theft detection, logout, the user's session list."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service import housekeeping, tokens
from service.app import create_app
from service.db import Database
from service.settings import Settings
from tests.conftest import TEST_SECRET_KEY, ClientFactory
from tests.helpers import problem, validation_errors
from tests.helpers_auth import PASSWORD, bearer, make_user

Client = TestClient[web.Request, web.Application]


async def log_in(client: Client, username: str = "alice", **headers: str) -> dict[str, Any]:
    response = await client.post(
        "/login/access-token", data={"username": username, "password": PASSWORD}, headers=headers
    )
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def refresh(client: Client, refresh_token: str, *, form: bool = False) -> Any:
    if form:
        return await client.post("/login/refresh", data={"refresh_token": refresh_token})
    return await client.post("/login/refresh", json={"refresh_token": refresh_token})


async def session_rows(database: Database) -> list[dict[str, Any]]:
    async with database.read() as conn:
        rows = await conn.fetch_all("SELECT * FROM sessions ORDER BY created_at")
    return [dict(row) for row in rows]


@pytest.fixture
async def alice(database: Database) -> None:
    await make_user(database, "alice")


@pytest.mark.usefixtures("alice")
async def test_login_opens_a_session_named_in_the_access_token(
    client: Client, database: Database
) -> None:
    body = await log_in(client, **{"User-Agent": "pytest-browser/1.0"})
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert len(body["refresh_token"]) >= 43  # 256 bits in URL-safe base64
    sid = jwt.decode(body["access_token"], TEST_SECRET_KEY, algorithms=["HS256"])["sid"]
    listing = await client.get("/users/me/sessions", headers=bearer(body["access_token"]))
    assert listing.status == 200
    sessions = await listing.json()
    mine = [s for s in sessions["data"] if s["id"] == sid]
    assert mine == [
        {
            "id": sid,
            "created_at": mine[0]["created_at"],
            "last_used_at": mine[0]["last_used_at"],
            "user_agent": "pytest-browser/1.0",
            "client": "127.0.0.1",
            "current": True,
        }
    ]
    assert sessions["count"] == len(sessions["data"])
    assert body["refresh_token"] not in await listing.text()
    assert body["access_token"] not in await listing.text()
    # Only a hash of the refresh token is stored.
    stored = next(row for row in await session_rows(database) if row["id"] == sid)
    assert stored["refresh_token_hash"] == tokens.token_digest(body["refresh_token"])
    assert body["refresh_token"] not in str(await session_rows(database))


@pytest.mark.usefixtures("alice")
@pytest.mark.parametrize("form", [False, True])
async def test_refresh_rotates_the_refresh_token(client: Client, form: bool) -> None:
    first = await log_in(client)
    response = await refresh(client, first["refresh_token"], form=form)
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"  # RFC 6749 5.1, for a token answer
    second = await response.json()
    assert set(second) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert second["refresh_token"] != first["refresh_token"]
    claims = [
        jwt.decode(t["access_token"], TEST_SECRET_KEY, algorithms=["HS256"])
        for t in (first, second)
    ]
    assert claims[0]["sid"] == claims[1]["sid"]
    assert (await client.get("/users/me", headers=bearer(second["access_token"]))).status == 200
    # The new refresh token works in turn.
    assert (await refresh(client, second["refresh_token"])).status == 200


@pytest.mark.usefixtures("alice")
async def test_a_replayed_refresh_token_ends_the_whole_session(client: Client) -> None:
    first = await log_in(client)
    legit = await (await refresh(client, first["refresh_token"])).json()
    # An attacker replays the spent token: refused, and the session ends for everyone.
    await problem(await refresh(client, first["refresh_token"]), 401)
    await problem(await refresh(client, legit["refresh_token"]), 401)
    await problem(await client.get("/users/me", headers=bearer(legit["access_token"])), 401)
    # Other sessions are unaffected.
    other = await log_in(client)
    assert (await client.get("/users/me", headers=bearer(other["access_token"]))).status == 200


@pytest.mark.usefixtures("alice")
async def test_concurrent_refreshes_of_one_token_let_exactly_one_through(client: Client) -> None:
    first = await log_in(client)
    responses = await asyncio.gather(*(refresh(client, first["refresh_token"]) for _ in range(5)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [200, 401, 401, 401, 401]
    # No grace: the duplicates count as reuse, so the winner's session has ended too.
    winner = await next(r for r in responses if r.status == 200).json()
    await problem(await refresh(client, winner["refresh_token"]), 401)


MALFORMED_REFRESH_TOKENS = [
    "",
    "x",
    "not-a-token-at-all",
    "a" * 43,  # the right shape, but no session's
    "a" * 44,
    "a" * 5000,
    "é" * 10,
    "\u0000abc",
    " " + "a" * 42,
]


@pytest.mark.usefixtures("alice")
@pytest.mark.parametrize(
    ("refresh_token", "form"),
    [(token, form) for token in MALFORMED_REFRESH_TOKENS for form in (False, True)],
    ids=lambda value: str(value)[:12],
)
async def test_a_malformed_refresh_token_is_401_like_an_unknown_one(
    client: Client, database: Database, refresh_token: str, form: bool
) -> None:
    """A client that logs in again on 401 needs no other case: never a 422 for its token."""
    await log_in(client)
    before = await session_rows(database)
    if form:
        response = await refresh(client, refresh_token, form=True)
    else:
        response = await refresh(client, refresh_token)
    await problem(response, 401, "The refresh token is invalid, expired or already used")
    assert await session_rows(database) == before  # nothing spent, nothing ended


@pytest.mark.parametrize("value", [None, 123, ["x"], {"a": "b"}])
async def test_a_refresh_token_that_is_not_a_string_is_422(client: Client, value: object) -> None:
    response = await client.post("/login/refresh", json={"refresh_token": value})
    assert "refresh_token" in await validation_errors(response, "refresh_token")


async def test_refresh_needs_its_field(client: Client) -> None:
    response = await client.post("/login/refresh", json={})
    body = await problem(response, 422)
    assert "refresh_token" in body["errors"]


@pytest.mark.usefixtures("alice")
async def test_logout_ends_the_session_from_the_next_request_on(client: Client) -> None:
    body = await log_in(client)
    headers = bearer(body["access_token"])
    assert (await client.post("/logout", headers=headers)).status == 204
    await problem(await client.get("/users/me", headers=headers), 401)
    await problem(await refresh(client, body["refresh_token"]), 401)


async def test_logout_needs_a_token(client: Client) -> None:
    await problem(await client.post("/logout"), 401)


@pytest.mark.usefixtures("alice")
async def test_ending_one_session_and_all_others(client: Client, database: Database) -> None:
    phone, laptop, tablet = [await log_in(client) for _ in range(3)]
    sid = {
        name: jwt.decode(t["access_token"], TEST_SECRET_KEY, algorithms=["HS256"])["sid"]
        for name, t in (("phone", phone), ("laptop", laptop), ("tablet", tablet))
    }
    headers = bearer(laptop["access_token"])
    assert (
        await client.delete(f"/users/me/sessions/{sid['phone']}", headers=headers)
    ).status == 204
    await problem(await client.get("/users/me", headers=bearer(phone["access_token"])), 401)
    # Already ended: 404.
    await problem(await client.delete(f"/users/me/sessions/{sid['phone']}", headers=headers), 404)
    await problem(await client.delete("/users/me/sessions/no-such-session", headers=headers), 404)
    assert (await client.delete("/users/me/sessions", headers=headers)).status == 204
    await problem(await client.get("/users/me", headers=bearer(tablet["access_token"])), 401)
    listing = await (await client.get("/users/me/sessions", headers=headers)).json()
    assert [s["id"] for s in listing["data"]] == [sid["laptop"]]
    assert (await client.get("/users/me", headers=headers)).status == 200


async def test_a_user_cannot_see_or_end_another_users_sessions(
    client: Client, database: Database
) -> None:
    await make_user(database, "alice")
    await make_user(database, "bob")
    alice = await log_in(client, "alice")
    bob = await log_in(client, "bob")
    alice_sid = jwt.decode(alice["access_token"], TEST_SECRET_KEY, algorithms=["HS256"])["sid"]
    bob_headers = bearer(bob["access_token"])
    listing = await (await client.get("/users/me/sessions", headers=bob_headers)).json()
    assert alice_sid not in [s["id"] for s in listing["data"]]
    await problem(await client.delete(f"/users/me/sessions/{alice_sid}", headers=bob_headers), 404)
    assert (await client.get("/users/me", headers=bearer(alice["access_token"]))).status == 200


@pytest.mark.usefixtures("alice")
async def test_own_password_change_ends_other_sessions_and_keeps_the_current_one(
    client: Client,
) -> None:
    current, other = await log_in(client), await log_in(client)
    changed = await client.patch(
        "/users/me/password",
        json={"current_password": PASSWORD, "new_password": "a brand new secret"},
        headers=bearer(current["access_token"]),
    )
    assert changed.status == 204
    # Every access token issued before is refused, the current one included...
    await problem(await client.get("/users/me", headers=bearer(current["access_token"])), 401)
    # ...but the current session continues through its refresh token; the other ends.
    renewed = await refresh(client, current["refresh_token"])
    assert renewed.status == 200
    token = (await renewed.json())["access_token"]
    assert (await client.get("/users/me", headers=bearer(token))).status == 200
    await problem(await refresh(client, other["refresh_token"]), 401)


async def test_a_superuser_deactivating_or_resetting_ends_all_sessions(
    client: Client, database: Database
) -> None:
    root = await make_user(database, "root", is_superuser=True)
    alice = await make_user(database, "alice")
    admin = bearer((await log_in(client, "root"))["access_token"])
    before_reset = await log_in(client, "alice")
    reset = await client.patch(
        f"/users/{alice.id}", json={"password": "set by the admin"}, headers=admin
    )
    assert reset.status == 200
    await problem(await refresh(client, before_reset["refresh_token"]), 401)

    second = await client.post(
        "/login/access-token", data={"username": "alice", "password": "set by the admin"}
    )
    before_deactivation = await second.json()
    deactivated = await client.patch(f"/users/{alice.id}", json={"is_active": False}, headers=admin)
    assert deactivated.status == 200
    await problem(await refresh(client, before_deactivation["refresh_token"]), 401)
    await problem(
        await client.get("/users/me", headers=bearer(before_deactivation["access_token"])), 403
    )
    assert root.is_superuser


async def test_an_inactive_users_refresh_is_400(client: Client, database: Database) -> None:
    alice = await make_user(database, "alice")
    body = await log_in(client)
    async with database.transaction() as conn:  # deactivated behind the service's back
        await conn.execute("UPDATE users SET is_active = FALSE WHERE id = :id", {"id": alice.id})
    await problem(await refresh(client, body["refresh_token"]), 400, "Inactive user")


async def test_expired_sessions_refuse_refresh_are_not_listed_and_are_purged(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    short = dataclasses.replace(migrated, refresh_token_expire_days=1.5 / 86400)  # 1.5 s
    app = create_app(short)
    client: Client = await aiohttp_client(app)  # type: ignore[assignment]
    await make_user(database, "alice")
    expiring = await log_in(client)
    await asyncio.sleep(1.6)
    await problem(await refresh(client, expiring["refresh_token"]), 401)
    fresh = await log_in(client)
    listing = await client.get("/users/me/sessions", headers=bearer(fresh["access_token"]))
    sids = [s["id"] for s in (await listing.json())["data"]]
    expired_sid = jwt.decode(expiring["access_token"], TEST_SECRET_KEY, algorithms=["HS256"])["sid"]
    assert expired_sid not in sids
    purged = await housekeeping.purge_once(app)
    assert purged >= 1
    remaining = [row["id"] for row in await session_rows(database)]
    assert expired_sid not in remaining
    fresh_sid = jwt.decode(fresh["access_token"], TEST_SECRET_KEY, algorithms=["HS256"])["sid"]
    assert fresh_sid in remaining


@pytest.mark.usefixtures("alice")
async def test_purge_removes_ended_sessions_and_their_spent_tokens(
    client: Client, database: Database
) -> None:
    body = await log_in(client)
    await refresh(client, body["refresh_token"])  # one spent token
    await client.post("/logout", headers=bearer(body["access_token"]))  # old access: 401 now
    app = client.app
    assert app is not None
    async with database.read() as conn:
        spent_before = list(await conn.fetch_all("SELECT * FROM spent_refresh_tokens"))
    assert spent_before
    await housekeeping.purge_once(app)
    async with database.read() as conn:
        spent_after = list(await conn.fetch_all("SELECT * FROM spent_refresh_tokens"))
        ended = list(await conn.fetch_all("SELECT * FROM sessions WHERE ended_at IS NOT NULL"))
    assert spent_after == []
    assert ended == []


async def test_the_purge_runs_in_the_background(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    quick = dataclasses.replace(migrated, session_purge_interval_seconds=0.2)
    client: Client = await aiohttp_client(create_app(quick))  # type: ignore[assignment]
    await make_user(database, "alice")
    body = await log_in(client)
    await client.post("/logout", headers=bearer(body["access_token"]))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        async with database.read() as conn:
            ended = list(await conn.fetch_all("SELECT 1 FROM sessions WHERE ended_at IS NOT NULL"))
        if not ended:
            break
        await asyncio.sleep(0.1)
    assert ended == []
