"""Two-factor login (TOTP): enrollment, the login's second step, recovery codes, resets.

Codes are real: pyotp computes them from the secret the service handed out, at the time
of the clock the app was given (create_app(clock=...)), never through a mocked verifier.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
from aiohttp.test_utils import TestClient

from service import housekeeping
from service.app import create_app
from service.db import Database
from service.keys import OPENAPI_DOCUMENT
from service.openapi.document import TITLE
from service.queries import mfa_challenges
from service.settings import Settings, SettingsError
from tests.conftest import TEST_SECRET_KEY, ClientFactory, log_lines
from tests.helpers import problem
from tests.helpers_auth import (
    OTHER_KEY,
    PASSWORD,
    Client,
    auth,
    bearer,
    login,
    make_user,
    remember_token,
)
from tests.log_hygiene import remember
from tests.mail_server import eml_files, link_token, read_eml, wait_async

SECOND_FACTOR = "Second factor required"
INVALID_CODE = "Invalid code"
INVALID_MFA_TOKEN = "The second-factor token is invalid, expired or already used"
STEP = 30
NO_STORE = ("no-store", "no-cache")  # Cache-Control, Pragma: see service/headers.py


class Clock:
    """The app's time: starts 5 s into a 30 s step, moves only when told."""

    def __init__(self) -> None:
        self.now = (int(time.time()) // STEP) * STEP + 5.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def client_with(
    aiohttp_client: ClientFactory, settings: Settings, clock: Clock
) -> TestClient:  # type: ignore[type-arg]
    return await aiohttp_client(create_app(settings, clock=clock))  # type: ignore[no-any-return]


@pytest.fixture
async def app(aiohttp_client: ClientFactory, migrated: Settings, clock: Clock) -> Client:
    return await client_with(aiohttp_client, migrated, clock)


def code(secret: str, clock: Clock, steps: int = 0) -> str:
    """The code an authenticator app shows at the clock's time, `steps` steps away."""
    return pyotp.TOTP(secret).at(clock.now + steps * STEP)


async def enroll(client: Client, headers: dict[str, str]) -> str:
    response = await client.post("/users/me/totp", json={"password": PASSWORD}, headers=headers)
    assert response.status == 200, await response.text()
    return remember((await response.json())["secret"], "a TOTP secret")


async def enable(client: Client, headers: dict[str, str], clock: Clock) -> tuple[str, list[str]]:
    """Enroll and confirm: the secret and the recovery codes."""
    secret = await enroll(client, headers)
    confirmed = await client.post(
        "/users/me/totp/confirm", json={"code": code(secret, clock)}, headers=headers
    )
    assert confirmed.status == 200, await confirmed.text()
    codes = (await confirmed.json())["recovery_codes"]
    return secret, [remember(c, "a recovery code") for c in codes]


async def mfa_token(client: Client, username: str, **headers: str) -> str:
    """Step one of a login with TOTP on: the 403's mfa_token."""
    body = await problem(
        await client.post(
            "/login/access-token",
            data={"username": username, "password": PASSWORD},
            headers=headers,
        ),
        403,
    )
    return remember(body["mfa_token"], "an mfa_token")


async def second_step(client: Client, token: str, typed: str) -> Any:
    return await client.post("/login/mfa", json={"mfa_token": token, "code": typed})


async def rows(database: Database, sql: str, **params: object) -> list[dict[str, Any]]:
    async with database.read() as conn:
        return [dict(row) for row in await conn.fetch_all(sql, params)]


async def test_enrollment_hands_out_a_pending_secret_the_app_can_read(
    app: Client, database: Database
) -> None:
    user = await make_user(database, "alice")
    headers = await auth(database, user.id)
    response = await app.post("/users/me/totp", json={"password": PASSWORD}, headers=headers)
    assert response.status == 200
    assert (response.headers["Cache-Control"], response.headers["Pragma"]) == NO_STORE
    body = await response.json()
    secret = remember(body["secret"], "a TOTP secret")
    assert set(body) == {"secret", "otpauth_uri", "qr_svg"}
    uri = urlsplit(body["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == "/Products and accounts API:alice"
    query = parse_qs(uri.query)
    assert query["secret"] == [secret] and query["issuer"] == ["Products and accounts API"]
    assert len(base64.b32decode(secret)) == 20  # 160 bits
    assert body["qr_svg"].startswith("<svg") and body["qr_svg"].rstrip().endswith("</svg>")
    # Pending: nothing changes until it is confirmed.
    me = await (await app.get("/users/me", headers=headers)).json()
    assert me["totp_enabled"] is False
    assert (await login(app, "alice")).status == 200
    # At rest: neither the secret nor its bytes are in the row.
    (stored,) = await rows(database, "SELECT * FROM totp_secrets")
    assert secret not in str(stored) and secret.lower() not in str(stored).lower()
    assert stored["key_id"] and not stored["enabled"]


async def test_the_issuer_follows_totp_issuer(
    aiohttp_client: ClientFactory, migrated: Settings, clock: Clock, database: Database
) -> None:
    settings = dataclasses.replace(migrated, totp_issuer="Shop")
    client = await client_with(aiohttp_client, settings, clock)
    user = await make_user(database, "alice")
    response = await client.post(
        "/users/me/totp", json={"password": PASSWORD}, headers=await auth(database, user.id)
    )
    uri = (await response.json())["otpauth_uri"]
    assert uri.startswith("otpauth://totp/Shop:alice?") and "issuer=Shop" in uri


async def test_a_wrong_password_is_400_and_counted_like_current_passwords(
    aiohttp_client: ClientFactory, migrated: Settings, clock: Clock, database: Database
) -> None:
    client = await client_with(
        aiohttp_client, dataclasses.replace(migrated, login_max_failures=2), clock
    )
    user = await make_user(database, "alice")
    headers = await auth(database, user.id)
    for _ in range(2):
        wrong = await client.post("/users/me/totp", json={"password": "nope"}, headers=headers)
        await problem(wrong, 400, "Incorrect password")
    locked = await client.post("/users/me/totp", json={"password": PASSWORD}, headers=headers)
    await problem(locked, 429)
    await problem(await client.get("/users/me", headers=headers), 401)  # that session ended


async def test_confirming_turns_it_on_and_ends_the_other_sessions(
    app: Client, database: Database, clock: Clock
) -> None:
    user = await make_user(database, "alice")
    other = await app.post("/login/access-token", data={"username": "alice", "password": PASSWORD})
    other_headers = bearer(remember_token((await other.json())["access_token"]))
    headers = await auth(database, user.id)
    secret = await enroll(app, headers)
    wrong = await app.post(
        "/users/me/totp/confirm", json={"code": code(secret, clock, 3)}, headers=headers
    )
    await problem(wrong, 400, INVALID_CODE)
    confirmed = await app.post(
        "/users/me/totp/confirm", json={"code": code(secret, clock)}, headers=headers
    )
    assert confirmed.status == 200
    assert (confirmed.headers["Cache-Control"], confirmed.headers["Pragma"]) == NO_STORE
    codes = (await confirmed.json())["recovery_codes"]
    assert len(codes) == 10 == len(set(codes))
    me = await (await app.get("/users/me", headers=headers)).json()
    assert me["totp_enabled"] is True
    await problem(await app.get("/users/me", headers=other_headers), 401)
    # Stored only as keyed hashes.
    stored = await rows(database, "SELECT code_hash FROM totp_recovery_codes")
    assert len(stored) == 10
    assert not {c.replace("-", "") for c in codes} & {r["code_hash"] for r in stored}
    # On: enrolling again is refused, and the pending secret is gone.
    again = await app.post("/users/me/totp", json={"password": PASSWORD}, headers=headers)
    await problem(again, 409, "Two-factor authentication is already enabled")
    repeat = await app.post(
        "/users/me/totp/confirm", json={"code": code(secret, clock, 1)}, headers=headers
    )
    await problem(repeat, 409)


async def test_enrolling_again_replaces_a_pending_secret(
    app: Client, database: Database, clock: Clock
) -> None:
    user = await make_user(database, "alice")
    headers = await auth(database, user.id)
    first = await enroll(app, headers)
    second = await enroll(app, headers)
    assert first != second
    stale = await app.post(
        "/users/me/totp/confirm", json={"code": code(first, clock)}, headers=headers
    )
    if code(first, clock) != code(second, clock):  # one in a million they agree
        await problem(stale, 400, INVALID_CODE)
    fresh = await app.post(
        "/users/me/totp/confirm", json={"code": code(second, clock)}, headers=headers
    )
    assert fresh.status == 200


async def test_confirming_with_nothing_pending_is_409_and_no_wrong_code(
    aiohttp_client: ClientFactory, migrated: Settings, clock: Clock, database: Database
) -> None:
    client = await client_with(
        aiohttp_client, dataclasses.replace(migrated, login_max_failures=3), clock
    )
    user = await make_user(database, "alice")
    headers = await auth(database, user.id)
    for _ in range(4):  # past LOGIN_MAX_FAILURES, had each counted
        response = await client.post(
            "/users/me/totp/confirm", json={"code": "123456"}, headers=headers
        )
        await problem(response, 409, "No two-factor enrollment is waiting to be confirmed")
    assert (await client.get("/users/me", headers=headers)).status == 200  # session lives


async def test_login_with_totp_takes_two_steps(
    app: Client, database: Database, clock: Clock
) -> None:
    user = await make_user(database, "alice")
    secret, _ = await enable(app, await auth(database, user.id), clock)
    sessions_before = await rows(database, "SELECT id FROM sessions")

    first = await app.post("/login/access-token", data={"username": "alice", "password": PASSWORD})
    body = await problem(first, 403, SECOND_FACTOR)
    token = remember(body["mfa_token"], "an mfa_token")
    assert "access_token" not in body and len(token) >= 43
    assert await rows(database, "SELECT id FROM sessions") == sessions_before  # no session
    # A wrong password is still the same 401 as ever.
    await problem(await login(app, "alice", "wrong password"), 401)

    clock.advance(STEP)  # the step the confirmation spent is over
    second = await second_step(app, token, code(secret, clock))
    assert second.status == 200, await second.text()
    assert (second.headers["Cache-Control"], second.headers["Pragma"]) == NO_STORE
    tokens = await second.json()
    assert set(tokens) == {"access_token", "token_type", "expires_in", "refresh_token"}
    access = bearer(remember_token(tokens["access_token"]))
    assert (await (await app.get("/users/me", headers=access)).json())["username"] == "alice"
    # Refresh needs no code: the session was opened with one.
    remember(tokens["refresh_token"], "a refresh token")
    refreshed = await app.post("/login/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status == 200
    remember((await refreshed.json())["refresh_token"], "a refresh token")
    # The token is spent.
    await problem(await second_step(app, token, code(secret, clock, 1)), 401, INVALID_MFA_TOKEN)


async def test_the_second_step_takes_a_form_too(
    app: Client, database: Database, clock: Clock
) -> None:
    user = await make_user(database, "alice")
    secret, _ = await enable(app, await auth(database, user.id), clock)
    token = await mfa_token(app, "alice")
    form = {"mfa_token": token, "code": code(secret, clock, 1)}
    response = await app.post("/login/mfa", data=form)
    assert response.status == 200
    remember((await response.json())["refresh_token"], "a refresh token")


async def test_a_code_counts_one_step_either_side_and_only_once(
    app: Client, database: Database, clock: Clock
) -> None:
    user = await make_user(database, "alice")
    secret, _ = await enable(app, await auth(database, user.id), clock)
    clock.advance(10 * STEP)
    for steps in (-2, 2):  # too old, too new
        token = await mfa_token(app, "alice")
        await problem(await second_step(app, token, code(secret, clock, steps)), 401, INVALID_CODE)
    token = await mfa_token(app, "alice")
    assert (await second_step(app, token, code(secret, clock, -1))).status == 200
    # Replayed inside its window: refused, as is any older step.
    token = await mfa_token(app, "alice")
    await problem(await second_step(app, token, code(secret, clock, -1)), 401, INVALID_CODE)
    assert (await second_step(app, token, code(secret, clock, 1))).status == 200
    token = await mfa_token(app, "alice")
    await problem(await second_step(app, token, code(secret, clock)), 401, INVALID_CODE)


async def test_a_recovery_code_works_once(app: Client, database: Database, clock: Clock) -> None:
    user = await make_user(database, "alice")
    _, codes = await enable(app, await auth(database, user.id), clock)
    token = await mfa_token(app, "alice")
    assert (await second_step(app, token, codes[0].upper().replace("-", " "))).status == 200
    assert len(await rows(database, "SELECT * FROM totp_recovery_codes")) == 9
    token = await mfa_token(app, "alice")
    await problem(await second_step(app, token, codes[0]), 401, INVALID_CODE)
    assert (await second_step(app, token, codes[1])).status == 200


async def test_five_wrong_codes_kill_the_token_and_count_as_failed_logins(
    aiohttp_client: ClientFactory, migrated: Settings, clock: Clock, database: Database
) -> None:
    client = await client_with(
        aiohttp_client, dataclasses.replace(migrated, login_max_failures=6), clock
    )
    user = await make_user(database, "alice")
    secret, _ = await enable(client, await auth(database, user.id), clock)
    token = await mfa_token(client, "alice")
    wrong = "000000" if code(secret, clock, 1) != "000000" else "000001"
    clock.advance(STEP)
    for _ in range(5):
        await problem(await second_step(client, token, wrong), 401, INVALID_CODE)
    dead = await second_step(client, token, code(secret, clock))
    await problem(dead, 401, INVALID_MFA_TOKEN)
    # Five failures counted for (alice, this client), not cleared by the right password
    # (else each new mfa_token would bring five more guesses): the sixth locks the pair.
    token = await mfa_token(client, "alice")
    await problem(await second_step(client, token, wrong), 401, INVALID_CODE)
    await problem(await login(client, "alice"), 429)
    await problem(await second_step(client, token, code(secret, clock)), 429)
    assert any("wrong second factor at login for user" in line for line in log_lines(migrated))


async def test_unknown_expired_and_outdated_tokens_are_401(
    app: Client, database: Database, clock: Clock
) -> None:
    user = await make_user(database, "alice")
    headers = await auth(database, user.id)
    secret, _ = await enable(app, headers, clock)
    clock.advance(STEP)
    await problem(await second_step(app, "no-such-token", code(secret, clock)), 401)
    expired = await mfa_token(app, "alice")
    clock.advance(301)
    await problem(await second_step(app, expired, code(secret, clock)), 401, INVALID_MFA_TOKEN)
    # Bound to the password when issued: a change meanwhile makes it worthless.
    outdated = await mfa_token(app, "alice")
    change = {"current_password": PASSWORD, "new_password": "another good password"}
    assert (await app.patch("/users/me/password", json=change, headers=headers)).status == 204
    await problem(await second_step(app, outdated, code(secret, clock)), 401, INVALID_MFA_TOKEN)


async def test_two_parallel_second_steps_open_one_session(
    app: Client, database: Database, clock: Clock
) -> None:
    user = await make_user(database, "alice")
    _, codes = await enable(app, await auth(database, user.id), clock)
    token = await mfa_token(app, "alice")
    before = len(await rows(database, "SELECT id FROM sessions"))
    answers = await asyncio.gather(*(second_step(app, token, codes[0]) for _ in range(4)))
    statuses = sorted(answer.status for answer in answers)
    assert statuses == [200, 401, 401, 401]
    for answer in answers:
        if answer.status == 200:
            remember((await answer.json())["refresh_token"], "a refresh token")
    assert len(await rows(database, "SELECT id FROM sessions")) == before + 1
    assert len(await rows(database, "SELECT * FROM totp_recovery_codes")) == 9


async def test_disabling_needs_the_password_and_a_code(
    app: Client, database: Database, clock: Clock
) -> None:
    user = await make_user(database, "alice")
    headers = await auth(database, user.id)
    secret, _ = await enable(app, headers, clock)
    clock.advance(STEP)
    wrong_password = {"password": "wrong", "code": code(secret, clock)}
    response = await app.delete("/users/me/totp", json=wrong_password, headers=headers)
    await problem(response, 400, "Incorrect password")
    wrong_code = {"password": PASSWORD, "code": "12345x"}
    response = await app.delete("/users/me/totp", json=wrong_code, headers=headers)
    await problem(response, 400, INVALID_CODE)
    right = {"password": PASSWORD, "code": code(secret, clock)}
    assert (await app.delete("/users/me/totp", json=right, headers=headers)).status == 204
    me = await (await app.get("/users/me", headers=headers)).json()
    assert me["totp_enabled"] is False
    for table in ("totp_secrets", "totp_recovery_codes"):
        assert await rows(database, f"SELECT * FROM {table}") == []
    assert (await login(app, "alice")).status == 200  # one step again
    again = await app.delete("/users/me/totp", json=right, headers=headers)
    await problem(again, 409, "Two-factor authentication is not enabled")


async def test_new_recovery_codes_replace_the_old_ones(
    app: Client, database: Database, clock: Clock
) -> None:
    user = await make_user(database, "alice")
    headers = await auth(database, user.id)
    secret, old = await enable(app, headers, clock)
    path = "/users/me/totp/recovery-codes"
    await problem(await app.post(path, json={"code": "999999x"}, headers=headers), 400)
    response = await app.post(path, json={"code": code(secret, clock, 1)}, headers=headers)
    assert response.status == 200
    assert (response.headers["Cache-Control"], response.headers["Pragma"]) == NO_STORE
    new = [remember(c, "a recovery code") for c in (await response.json())["recovery_codes"]]
    assert len(new) == 10 and not set(new) & set(old)
    token = await mfa_token(app, "alice")
    await problem(await second_step(app, token, old[1]), 401, INVALID_CODE)
    assert (await second_step(app, token, new[0])).status == 200


async def test_wrong_codes_on_ones_own_routes_are_limited(
    aiohttp_client: ClientFactory, migrated: Settings, clock: Clock, database: Database
) -> None:
    client = await client_with(
        aiohttp_client, dataclasses.replace(migrated, login_max_failures=3), clock
    )
    user = await make_user(database, "alice")
    headers = await auth(database, user.id)
    await enable(client, headers, clock)
    path = "/users/me/totp/recovery-codes"
    for _ in range(3):
        await problem(await client.post(path, json={"code": "0000000"}, headers=headers), 400)
    locked = await client.post(path, json={"code": "0000000"}, headers=headers)
    await problem(locked, 429)
    assert int(locked.headers["Retry-After"]) > 0
    await problem(await client.get("/users/me", headers=headers), 401)  # that session ended
    # The 429 is warned of once (by the middleware); the session's end is an INFO line.
    warnings = [line for line in log_lines(migrated) if "WARNING" in line]
    assert len([line for line in warnings if "too_many_wrong_codes" in line]) == 1
    assert not [line for line in warnings if "too many wrong TOTP codes" in line]
    ended = f"too many wrong TOTP codes for user {user.id}: his session ended"
    assert any("INFO" in line and ended in line for line in log_lines(migrated))


async def test_the_second_factor_asked_is_no_refusal_in_the_log(
    app: Client, database: Database, clock: Clock, migrated: Settings
) -> None:
    user = await make_user(database, "alice")
    await enable(app, await auth(database, user.id), clock)
    await mfa_token(app, "alice")
    lines = log_lines(migrated)
    asked = f"password accepted for user {user.id}; a second factor is asked"
    assert any("INFO" in line and asked in line for line in lines)
    assert not [line for line in lines if "second_factor_required" in line]
    assert not [line for line in lines if "WARNING" in line and "Refused" in line]


async def test_a_superuser_removes_a_users_totp(
    app: Client, database: Database, clock: Clock, migrated: Settings
) -> None:
    root = await make_user(database, "root", is_superuser=True)
    user = await make_user(database, "alice")
    headers = await auth(database, user.id)
    await enable(app, headers, clock)
    await problem(await app.delete(f"/users/{user.id}/totp", headers=headers), 403)
    root_headers = await auth(database, root.id)
    await problem(await app.delete("/users/999999/totp", headers=root_headers), 404)
    assert (await app.delete(f"/users/{user.id}/totp", headers=root_headers)).status == 204
    await problem(await app.get("/users/me", headers=headers), 401)  # her sessions ended
    assert (await login(app, "alice")).status == 200
    stored = await rows(database, "SELECT totp_enabled FROM users WHERE id = :id", id=user.id)
    assert not stored[0]["totp_enabled"]
    assert await rows(database, "SELECT * FROM totp_recovery_codes") == []
    expected = f"two-factor authentication of user {user.id} removed by superuser {root.id}"
    assert any("WARNING" in line and expected in line for line in log_lines(migrated))


async def test_a_superuser_cannot_remove_his_own_totp_on_the_superuser_route(
    app: Client, database: Database, clock: Clock
) -> None:
    # A stolen access token alone must not strip the second factor: his own takes a code.
    root = await make_user(database, "root", is_superuser=True)
    headers = await auth(database, root.id)
    secret, _ = await enable(app, headers, clock)
    refused = await app.delete(f"/users/{root.id}/totp", headers=headers)
    await problem(
        refused, 403, "Turn your own two-factor authentication off with DELETE /users/me/totp"
    )
    await mfa_token(app, "root")  # still two steps
    clock.advance(STEP)
    body = {"password": PASSWORD, "code": code(secret, clock)}
    assert (await app.delete("/users/me/totp", json=body, headers=headers)).status == 204


async def test_superusers_without_totp_may_be_refused_superuser_routes(
    aiohttp_client: ClientFactory, migrated: Settings, clock: Clock, database: Database
) -> None:
    settings = dataclasses.replace(migrated, require_totp_for_superusers=True)
    client = await client_with(aiohttp_client, settings, clock)
    root = await make_user(database, "root", is_superuser=True)
    user = await make_user(database, "alice")
    headers = await auth(database, root.id)
    refused = await client.get("/users/", headers=headers)
    await problem(refused, 403, "Two-factor authentication required")
    # Routes any user may call still answer, and his own TOTP routes let him enroll.
    assert (await client.get("/users/me", headers=headers)).status == 200
    assert (await client.get("/users/me", headers=await auth(database, user.id))).status == 200
    await enable(client, headers, clock)
    assert (await client.get("/users/", headers=headers)).status == 200


async def test_superusers_without_totp_have_no_powers_over_others_on_user_routes(
    aiohttp_client: ClientFactory, migrated: Settings, clock: Clock, database: Database
) -> None:
    # PATCH /users/{id} and GET /users/{username} are open to any user, and give a
    # superuser powers over others: those powers need TOTP too.
    settings = dataclasses.replace(migrated, require_totp_for_superusers=True)
    client = await client_with(aiohttp_client, settings, clock)
    root = await make_user(database, "root", is_superuser=True)
    user = await make_user(database, "alice")
    headers = await auth(database, root.id)
    change = {"full_name": "Changed by root"}
    patched = await client.patch(f"/users/{user.id}", json=change, headers=headers)
    await problem(patched, 403, "Two-factor authentication required")
    await problem(
        await client.get("/users/alice", headers=headers), 403, "Two-factor authentication required"
    )
    promote = await client.patch(f"/users/{root.id}", json={"is_active": True}, headers=headers)
    await problem(promote, 403, "Two-factor authentication required")
    stored = await rows(database, "SELECT full_name FROM users WHERE id = :id", id=user.id)
    assert stored[0]["full_name"] != "Changed by root"
    # Himself he may still read and change.
    assert (await client.get("/users/root", headers=headers)).status == 200
    own = await client.patch(f"/users/{root.id}", json={"full_name": "Root"}, headers=headers)
    assert own.status == 200, await own.text()
    await enable(client, headers, clock)
    patched = await client.patch(f"/users/{user.id}", json=change, headers=headers)
    assert patched.status == 200, await patched.text()
    assert (await patched.json())["full_name"] == "Changed by root"
    found = await client.get("/users/alice", headers=headers)
    assert found.status == 200 and (await found.json())["id"] == user.id


async def test_new_answers_speak_russian(app: Client, database: Database, clock: Clock) -> None:
    user = await make_user(database, "alice")
    await enable(app, await auth(database, user.id), clock)
    response = await app.post(
        "/login/access-token",
        data={"username": "alice", "password": PASSWORD},
        headers={"Accept-Language": "ru"},
    )
    body = await problem(response, 403, "Требуется второй фактор")
    remember(body["mfa_token"], "an mfa_token")
    wrong = await app.post(
        "/login/mfa",
        json={"mfa_token": body["mfa_token"], "code": "0000000"},
        headers={"Accept-Language": "ru"},
    )
    await problem(wrong, 401, "Неверный код")


async def test_a_secret_sealed_under_another_secret_key_opens_no_more(
    aiohttp_client: ClientFactory, migrated: Settings, clock: Clock, database: Database
) -> None:
    """Rotating SECRET_KEY: enrolled users can finish no login by TOTP (README says why)."""
    client = await client_with(aiohttp_client, migrated, clock)
    user = await make_user(database, "alice")
    secret, codes = await enable(client, await auth(database, user.id), clock)
    rotated = await client_with(
        aiohttp_client, dataclasses.replace(migrated, secret_key=OTHER_KEY), clock
    )
    clock.advance(STEP)
    token = await mfa_token(rotated, "alice")
    await problem(await second_step(rotated, token, code(secret, clock)), 401, INVALID_CODE)
    await problem(await second_step(rotated, token, codes[0]), 401, INVALID_CODE)
    assert any("cannot be opened" in line for line in log_lines(migrated))


async def test_a_password_reset_by_email_leaves_totp_on(
    app: Client, database: Database, clock: Clock, migrated: Settings
) -> None:
    user = await make_user(database, "alice", email="alice@example.com")
    secret, _ = await enable(app, await auth(database, user.id), clock)
    assert (await app.post("/password-recovery", json={"email": user.email})).status == 202
    new_password = remember("a brand new password", "a new password")
    token = await _reset_token(migrated)
    reset = await app.post("/reset-password", json={"token": token, "new_password": new_password})
    assert reset.status == 204
    response = await login(app, "alice", new_password)
    body = await problem(response, 403, SECOND_FACTOR)
    clock.advance(STEP)
    second = await second_step(
        app, remember(body["mfa_token"], "an mfa_token"), code(secret, clock)
    )
    assert second.status == 200
    remember((await second.json())["refresh_token"], "a refresh token")


async def _reset_token(settings: Settings) -> str:
    """The reset link's token, from the message the file transport wrote."""
    folder = Path(settings.mail_url.removeprefix("file:"))
    await wait_async(lambda: bool(eml_files(folder)), "the reset message")
    return link_token(read_eml(eml_files(folder)[0]))


def test_the_api_document_describes_both_steps() -> None:
    app = create_app(Settings(secret_key=TEST_SECRET_KEY))
    document = app[OPENAPI_DOCUMENT]
    paths = document["paths"]
    first = paths["/login/access-token"]["post"]
    assert "403" in first["responses"] and "mfa_token" in first["description"]
    second = paths["/login/mfa"]["post"]
    assert second["operationId"] == "login_mfa" and second["security"] == []
    assert set(second["requestBody"]["content"]) == {
        "application/json",
        "application/x-www-form-urlencoded",
    }
    assert second["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Token"
    }
    assert {"401", "429"} <= set(second["responses"])
    assert "mfa_token" in document["components"]["schemas"]["Problem"]["properties"]
    assert "totp_enabled" in document["components"]["schemas"]["User"]["required"]
    operations = {
        ("post", "/users/me/totp"): "enroll_totp",
        ("post", "/users/me/totp/confirm"): "confirm_totp",
        ("delete", "/users/me/totp"): "disable_totp",
        ("post", "/users/me/totp/recovery-codes"): "new_recovery_codes",
        ("delete", "/users/{user}/totp"): "reset_user_totp",
    }
    for (method, path), operation_id in operations.items():
        assert paths[path][method]["operationId"] == operation_id


def test_the_totp_settings_are_read_and_validated() -> None:
    settings = Settings.from_env({"TOTP_ISSUER": "Shop", "REQUIRE_TOTP_FOR_SUPERUSERS": "yes"})
    assert (settings.totp_issuer, settings.require_totp_for_superusers) == ("Shop", True)
    defaults = Settings.from_env({})
    assert defaults.totp_issuer == TITLE and defaults.require_totp_for_superusers is False
    for bad in ("Shop:Main", "x" * 65, "tab\there"):
        with pytest.raises(SettingsError, match="TOTP_ISSUER"):
            Settings.from_env({"TOTP_ISSUER": bad})
    with pytest.raises(SettingsError, match="REQUIRE_TOTP_FOR_SUPERUSERS"):
        Settings.from_env({"REQUIRE_TOTP_FOR_SUPERUSERS": "maybe"})


async def test_the_purge_deletes_expired_second_steps_only(
    app: Client, database: Database, clock: Clock
) -> None:
    user = await make_user(database, "alice")
    await enable(app, await auth(database, user.id), clock)
    await mfa_token(app, "alice")  # live for 5 minutes
    async with database.transaction() as conn:  # as a login long ago left it
        await mfa_challenges.create(
            conn,
            token_hash="expired",
            user_id=user.id,
            token_version=1,
            password_fingerprint="-",
            now=1.0,
            expires_at=301.0,
        )
    await housekeeping.purge_once(app.server.app)
    left = await rows(database, "SELECT token_hash FROM mfa_challenges")
    assert len(left) == 1 and left[0]["token_hash"] != "expired"
