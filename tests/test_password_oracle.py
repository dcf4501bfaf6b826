"""Wrong `current_password` values are counted per user like failed logins: no oracle."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from service.app import create_app
from service.db import Database
from service.settings import Settings
from tests.conftest import log_lines
from tests.helpers import problem
from tests.helpers_auth import PASSWORD, Client, auth, login_token, make_user
from tests.log_hygiene import remember

ClientFactory = Callable[..., Any]
LIMIT = 3
GUESSES = [remember(f"guess number {n}", "a wrong current password") for n in range(LIMIT + 1)]


@pytest.fixture
async def strict(aiohttp_client: ClientFactory, migrated: Settings) -> Client:
    """The app with LOGIN_MAX_FAILURES=3, so that a test hashes a few times only."""
    settings = dataclasses.replace(migrated, login_max_failures=LIMIT)
    return await aiohttp_client(create_app(settings))  # type: ignore[no-any-return]


def own_password_change(user_id: int, current: str) -> tuple[str, dict[str, str]]:
    return "/users/me/password", {"current_password": current, "new_password": "new pass 123"}


def own_user_patch(user_id: int, current: str) -> tuple[str, dict[str, str]]:
    return f"/users/{user_id}", {"current_password": current, "password": "new pass 123"}


Route = Callable[[int, str], tuple[str, dict[str, str]]]


@pytest.mark.parametrize("route", [own_password_change, own_user_patch])
async def test_wrong_current_passwords_past_the_limit_are_429_and_end_the_session(
    strict: Client, database: Database, migrated: Settings, route: Route
) -> None:
    """A stolen access token cannot try current passwords without end: after
    LOGIN_MAX_FAILURES wrong ones, 429 with Retry-After, the session ends, a warning."""
    alice = await make_user(database, "alice")
    headers = await auth(database, alice.id)
    for guess in GUESSES[:LIMIT]:
        path, body = route(alice.id, guess)
        await problem(await strict.patch(path, json=body, headers=headers), 400)
    path, body = route(alice.id, GUESSES[LIMIT])
    response = await strict.patch(path, json=body, headers=headers)
    await problem(response, 429)
    assert 0 < int(response.headers["Retry-After"]) <= migrated.login_failure_window_seconds
    me = await strict.get("/users/me", headers=headers)
    await problem(me, 401)  # the session that made them has ended
    lines = log_lines(migrated)
    assert any(
        "WARNING" in line and f"too many wrong current passwords for user {alice.id}" in line
        for line in lines
    ), lines
    assert sum(f"wrong current password for user {alice.id}" in line for line in lines) == LIMIT
    assert not any(guess in line for line in lines for guess in GUESSES)


async def test_the_count_is_per_user_across_sessions_and_holds_the_right_password_too(
    strict: Client, database: Database
) -> None:
    """Failures from two sessions of one user add up; past the limit even the right
    current password is refused (429), so a 429 says nothing about the guess."""
    alice = await make_user(database, "alice")
    first = await auth(database, alice.id)
    second = {"Authorization": f"Bearer {await login_token(strict, 'alice')}"}
    for n, headers in enumerate([first, second, first]):
        path, body = own_password_change(alice.id, GUESSES[n])
        await problem(await strict.patch(path, json=body, headers=headers), 400)
    path, body = own_password_change(alice.id, PASSWORD)
    await problem(await strict.patch(path, json=body, headers=second), 429)


async def test_a_right_current_password_resets_the_count(
    strict: Client, database: Database
) -> None:
    alice = await make_user(database, "alice")
    headers = await auth(database, alice.id)
    for guess in GUESSES[: LIMIT - 1]:
        path, body = own_user_patch(alice.id, guess)
        await problem(await strict.patch(path, json=body, headers=headers), 400)
    right = await strict.patch(
        f"/users/{alice.id}", json={"current_password": PASSWORD, "full_name": "A"}, headers=headers
    )
    assert right.status == 200, await right.text()  # no password change: nothing counted
    changed = await strict.patch(
        "/users/me/password",
        json={"current_password": PASSWORD, "new_password": "another pass 1"},
        headers=headers,
    )
    assert changed.status == 204, await changed.text()
    headers = await auth(database, alice.id)  # the new token version; the same session
    for guess in GUESSES[: LIMIT - 1]:  # the count started again at the success
        path, body = own_password_change(alice.id, guess)
        await problem(await strict.patch(path, json=body, headers=headers), 400)
