"""POST /login/access-token: the token, its errors, throttling, hash upgrades, log hygiene."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from service.app import create_app
from service.db import Database
from service.settings import Settings
from tests.conftest import TEST_SECRET_KEY, log_lines
from tests.helpers import problem, validation_errors
from tests.helpers_auth import (
    BAD_LOGIN,
    INACTIVE,
    PASSWORD,
    Client,
    bearer,
    claims_token,
    login,
    login_token,
    make_user,
    password_hash,
    signup,
    user_body,
    user_row,
)

ClientFactory = Callable[..., Any]


# --- the token -----------------------------------------------------------------------------


async def test_login_answers_a_bearer_token(client: Client, database: Database) -> None:
    alice = await make_user(database, "alice")
    before = int(time.time())
    response = await login(client, "alice")
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"  # RFC 6749 5.1, for a token answer
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert isinstance(body["access_token"], str)
    assert {"access_token", "token_type", "expires_in"} <= set(body)
    claims = jwt.decode(
        body["access_token"],
        TEST_SECRET_KEY,
        algorithms=["HS256"],
        options={"require": ["sub", "iat", "exp"]},
    )
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"
    assert claims["sub"] == str(alice.id)
    assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int)
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    me = await user_body(
        await client.post("/login/test-token", headers=bearer(body["access_token"]))
    )
    assert me["id"] == alice.id


async def test_token_lifetime_follows_the_setting(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    client: Client = await aiohttp_client(
        create_app(dataclasses.replace(migrated, access_token_expire_minutes=5))
    )
    await make_user(database, "alice")
    body = await (await login(client, "alice")).json()
    claims = jwt.decode(body["access_token"], TEST_SECRET_KEY, algorithms=["HS256"])
    assert body["expires_in"] == 300 == claims["exp"] - claims["iat"]


async def test_the_full_oauth2_form_is_accepted_and_fields_are_required(
    client: Client, database: Database
) -> None:
    await make_user(database, "alice")
    response = await login(
        client,
        "alice",
        grant_type="password",
        scope="",
        client_id="swagger",
        client_secret="whatever",
    )
    assert response.status == 200, await response.text()
    response = await login(client, "alice", scope="read write")
    assert response.status == 200, await response.text()
    # Swagger UI's Authorize button sends the client credentials as HTTP Basic by default
    # ("Basic Og==" when they are empty); a client may also still carry its expired token.
    # The login route is public: such headers are not credentials for it.
    expired = claims_token(1, 1, iat=int(time.time()) - 7200, exp=int(time.time()) - 60)
    for header in ("Basic Og==", "Basic c3dhZ2dlcjpzZWNyZXQ=", f"Bearer {expired}", "junk"):
        response = await client.post(
            "/login/access-token",
            data={"username": "alice", "password": PASSWORD, "grant_type": "password"},
            headers={"Authorization": header},
        )
        assert response.status == 200, (header, await response.text())
    # Missing fields are 422.
    await validation_errors(
        await client.post("/login/access-token", data={"password": PASSWORD}), "username"
    )
    await validation_errors(
        await client.post("/login/access-token", data={"username": "alice"}), "password"
    )
    response = await client.post(
        "/login/access-token",
        data=b"",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    await validation_errors(response, "username", "password")


async def test_unknown_user_and_wrong_password_are_indistinguishable(
    client: Client, database: Database
) -> None:
    await make_user(database, "alice")
    answers = []
    for username, password in (
        ("alice", "wrong password"),
        ("nobody", PASSWORD),
        ("x", PASSWORD),  # an impossible username is just an unknown user
        ("no such user!", PASSWORD),
    ):
        response = await login(client, username, password)
        body = await problem(response, 401, BAD_LOGIN)
        answers.append((response.status, body, response.headers.get("WWW-Authenticate")))
    assert all(answer == answers[0] for answer in answers), answers


async def test_inactive_user_with_the_right_password_is_400(
    client: Client, database: Database
) -> None:
    await make_user(database, "ghost", is_active=False)
    await problem(await login(client, "ghost"), 400, INACTIVE)
    await problem(await login(client, "ghost", "wrong password"), 401, BAD_LOGIN)


async def test_passwords_are_checked_exactly_as_sent(client: Client) -> None:
    assert (await signup(client, "alice", " padded secret ")).status == 201
    for variant in ("padded secret", " padded secret", "padded secret ", " PADDED SECRET "):
        await problem(await login(client, "alice", variant), 401, BAD_LOGIN)
    assert (await login(client, "alice", " padded secret ")).status == 200


# --- throttling ----------------------------------------------------------------------------


def _throttled(settings: Settings, window: int = 900) -> Settings:
    return dataclasses.replace(settings, login_max_failures=3, login_failure_window_seconds=window)


async def _fail(client: Client, username: str, times: int) -> None:
    for _ in range(times):
        await problem(await login(client, username, "wrong password"), 401, BAD_LOGIN)


async def _locked(response: Any, window: int) -> None:
    await problem(response, 429)
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window


async def test_after_max_failures_even_the_right_password_gets_429(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    client: Client = await aiohttp_client(create_app(_throttled(migrated)))
    await make_user(database, "alice")
    await make_user(database, "bob")
    await _fail(client, "alice", 3)
    await _locked(await login(client, "alice"), 900)
    await _locked(await login(client, "ALICE"), 900)  # the same username
    await _locked(await login(client, "alice", "wrong password"), 900)
    # Another username from the same address is not locked out.
    assert (await login(client, "bob")).status == 200


async def test_a_non_username_is_throttled_under_a_hash_never_stored(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    """A password typed into the username field (or a NUL) is counted, but never stored."""
    client: Client = await aiohttp_client(create_app(_throttled(migrated)))
    typed_password = "my secret pass word\x00!"
    await _fail(client, typed_password, 3)
    await _locked(await login(client, typed_password, "anything"), 900)
    await _fail(client, "alice", 1)
    async with database.read() as conn:
        stored = [row[0] for row in await conn.fetch_all("SELECT username FROM login_failures")]
    assert len(stored) == 2 and "alice" in stored  # a real username is kept as it is
    [hashed] = [name for name in stored if name != "alice"]
    assert hashed.startswith("#") and len(hashed) == 65 and "secret" not in hashed


async def test_a_success_resets_the_failure_count(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    client: Client = await aiohttp_client(create_app(_throttled(migrated)))
    await make_user(database, "alice")
    await _fail(client, "alice", 2)
    assert (await login(client, "alice")).status == 200
    await _fail(client, "alice", 2)
    assert (await login(client, "alice")).status == 200


async def test_the_lockout_survives_a_restart(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    settings = _throttled(migrated)
    await make_user(database, "alice")
    first: Client = await aiohttp_client(create_app(settings))
    await _fail(first, "alice", 3)
    await first.close()
    second: Client = await aiohttp_client(create_app(settings))
    await _locked(await login(second, "alice"), 900)


async def test_the_lockout_ends_with_its_window_and_refusals_do_not_extend_it(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    now = [time.time()]  # the app's clock, moved by hand: the window is exact, not slept
    app = create_app(_throttled(migrated, window=60), clock=lambda: now[0])
    client: Client = await aiohttp_client(app)
    await make_user(database, "alice")
    await _fail(client, "alice", 1)  # the window begins
    now[0] += 10
    await _fail(client, "alice", 2)
    await _retry_after(await login(client, "alice"), 50)
    now[0] += 30
    await _retry_after(await login(client, "alice"), 20)  # refused: the window goes on
    now[0] += 19.5
    await _retry_after(await login(client, "alice"), 1)  # half a second, rounded up
    now[0] += 0.5
    assert (await login(client, "alice")).status == 200


async def _retry_after(response: Any, seconds: int) -> None:
    await problem(response, 429)
    assert response.headers["Retry-After"] == str(seconds)


# --- hash upgrade --------------------------------------------------------------------------


async def test_a_stale_hash_is_upgraded_on_login(client: Client, database: Database) -> None:
    stale = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8192),)).hash(PASSWORD)
    assert "m=8192" in stale
    alice = await make_user(database, "alice", hashed_password=stale)
    # A wrong password never upgrades the hash.
    await problem(await login(client, "alice", "wrong password"), 401, BAD_LOGIN)
    assert (await user_row(database, alice.id) or {})["hashed_password"] == stale
    token = await login_token(client, "alice")
    stored = (await user_row(database, alice.id) or {})["hashed_password"]
    assert stored != stale
    assert stored.startswith("$argon2id$") and "m=65536" in stored
    assert PasswordHash.recommended().verify(PASSWORD, stored)
    # The upgrade is no password change: the token from that login keeps working.
    assert (await client.get("/users/me", headers=bearer(token))).status == 200
    assert (await login(client, "alice")).status == 200
    assert (await user_row(database, alice.id) or {})["hashed_password"] == stored


# --- log hygiene ---------------------------------------------------------------------------


@pytest.mark.parametrize("log_json", [False, True])
async def test_no_secret_reaches_the_log(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database, log_json: bool
) -> None:
    settings = dataclasses.replace(migrated, log_json=log_json)
    client: Client = await aiohttp_client(create_app(settings))
    password, wrong = "signup secret 1234", "wrong guess 5678"
    assert (await signup(client, "alice", password)).status == 201
    await problem(await login(client, "alice", wrong), 401, BAD_LOGIN)
    await problem(await login(client, "nobody", wrong), 401, BAD_LOGIN)
    token = await login_token(client, "alice", password)
    assert (await client.get("/users/me", headers=bearer(token))).status == 200
    await problem(await client.get("/users/me", headers=bearer(token + "x")), 401)
    changed = await client.patch(
        "/users/me/password",
        json={"current_password": password, "new_password": "the next secret 90"},
        headers=bearer(token),
    )
    assert changed.status == 204
    await client.close()  # flush and close the sinks

    lines = log_lines(settings)
    assert any("POST /login/access-token" in line for line in lines), lines
    text = "\n".join(lines)
    stored = (await user_row(database, 1) or {})["hashed_password"]
    for secret in (
        password,
        wrong,
        "the next secret 90",
        token,
        token.split(".")[2],  # the signature alone
        "$argon2",
        stored,
        "Bearer ",
        "Authorization",
        TEST_SECRET_KEY,
        password_hash(),
    ):
        assert secret not in text, secret


# --- found by review: each of these answered a 500, broke a rule, or leaked a secret ---------


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nusername=a&password=Hunter2Secret\r\n--b--",
            415,
        ),
        ("application/x-www-form-urlencoded; charset=utf-16", b"username=a&password=b", 400),
        ("application/x-www-form-urlencoded", b"username=\xff&password=Hunter2Secret", 400),
    ],
)
async def test_unreadable_login_forms_are_4xx_and_leak_nothing(
    client: Client, migrated: Settings, content_type: str, body: bytes, status: int
) -> None:
    """A form the service cannot read is the client's error; its password is never logged."""
    response = await client.post(
        "/login/access-token", data=body, headers={"Content-Type": content_type}
    )
    await problem(response, status)
    assert "Hunter2Secret" not in "\n".join(log_lines(migrated))


async def test_parallel_wrong_logins_cannot_slip_under_the_limit(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    """Wrong passwords sent all at once count as many as sent one by one."""
    strict = dataclasses.replace(migrated, login_max_failures=3)
    client: Client = await aiohttp_client(create_app(strict))
    await make_user(database, "alice")
    attempts = [
        client.post("/login/access-token", data={"username": "alice", "password": "wrong!"})
        for _ in range(10)
    ]
    statuses = sorted(response.status for response in await asyncio.gather(*attempts))
    assert statuses == [401] * 3 + [429] * 7


async def test_a_user_agent_with_undecodable_bytes_still_logs_in(
    client: Client, database: Database
) -> None:
    """aiohttp keeps such bytes as lone surrogates, which no database can store as text."""
    await make_user(database, "alice")
    form = f"username=alice&password={PASSWORD}".encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(
        b"POST /login/access-token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"User-Agent: probe\xff\xfe\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {len(form)}\r\n\r\n".encode()
        + form
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    async with database.read() as conn:
        stored = await conn.fetch_all("SELECT user_agent FROM sessions")
    assert "probe\ufffd\ufffd" in [row[0] for row in stored]
