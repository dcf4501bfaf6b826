"""The Users part of API.md: signup, validation, mass assignment, administration."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Any

from yarl import URL

from service import keys
from service.app import create_app
from service.db import Database
from service.settings import Settings
from tests.helpers import problem, validation_errors
from tests.helpers_auth import (
    NO_PRIVILEGES,
    PASSWORD,
    USER_KEYS,
    USERNAME_TAKEN,
    Client,
    auth,
    bearer,
    login,
    login_token,
    make_user,
    rows_named,
    signup,
    user_body,
    user_count,
    user_row,
)

ClientFactory = Callable[..., Any]
LAST_SUPERUSER = 409


# --- signup --------------------------------------------------------------------------------


async def test_signup_creates_an_active_regular_user(client: Client, database: Database) -> None:
    response = await signup(client, "Alice", email="alice@example.com", full_name="Alice L")
    body = await user_body(response, 201)
    assert response.headers["Location"] == "/users/Alice"
    assert body["username"] == "Alice"
    assert body["email"] == "alice@example.com"
    assert body["full_name"] == "Alice L"
    assert body["is_active"] is True and body["is_superuser"] is False
    row = await user_row(database, body["id"])
    assert row is not None
    assert row["hashed_password"].startswith("$argon2id$")
    assert PASSWORD not in row["hashed_password"]
    token = await login_token(client, "Alice")
    got = await client.get(response.headers["Location"], headers=bearer(token))
    assert await user_body(got) == body
    bare = await user_body(await signup(client, "bob"), 201)
    assert bare["email"] is None and bare["full_name"] is None


async def test_signup_closed_is_403_and_creates_nothing(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    client: Client = await aiohttp_client(
        create_app(dataclasses.replace(migrated, open_signup=False))
    )
    await problem(await signup(client, "alice"), 403)
    assert await user_count(database) == 0
    # A superuser can still create accounts.
    root = await make_user(database, "root", is_superuser=True)
    created = await client.post(
        "/users/",
        json={"username": "alice", "password": PASSWORD},
        headers=await auth(database, root.id),
    )
    assert created.status == 201, await created.text()


# --- mass assignment -----------------------------------------------------------------------


async def test_signup_refuses_privileged_or_unknown_fields(
    client: Client, database: Database
) -> None:
    for extra in (
        {"is_superuser": True},
        {"is_active": False},
        {"is_superuser": False},
        {"id": 1},
        {"hashed_password": "$argon2id$v=19$m=8,t=1,p=1$AAAA$AAAA"},
        {"token_version": 5},
    ):
        response = await signup(client, "mallory", **extra)
        await validation_errors(response, *extra)
    assert await user_count(database) == 0


async def test_a_user_cannot_promote_or_reactivate_himself(
    client: Client, database: Database
) -> None:
    alice = await make_user(database, "alice")
    headers = await auth(database, alice.id)
    before = await user_row(database, alice.id)
    for body in (
        {"is_superuser": True},
        {"is_active": True},
        {"full_name": "ok", "is_superuser": True},
    ):
        response = await client.patch(f"/users/{alice.id}", json=body, headers=headers)
        await problem(response, 403, NO_PRIVILEGES)
    assert await user_row(database, alice.id) == before


async def test_patch_me_refuses_flags_as_unknown_fields(client: Client, database: Database) -> None:
    alice = await make_user(database, "alice")
    headers = await auth(database, alice.id)
    before = await user_row(database, alice.id)
    for body in ({"is_superuser": True}, {"is_active": False}, {"password": "new long pass"}):
        response = await client.patch("/users/me", json=body, headers=headers)
        await validation_errors(response, *body)
    assert await user_row(database, alice.id) == before
    response = await client.patch(
        "/users/me/password",
        json={"current_password": PASSWORD, "new_password": "new long pass", "is_superuser": True},
        headers=headers,
    )
    await validation_errors(response, "is_superuser")
    assert await user_row(database, alice.id) == before


async def test_superuser_may_create_superusers_and_inactive_users(
    client: Client, database: Database
) -> None:
    root = await auth(database, (await make_user(database, "root", is_superuser=True)).id)
    su = await client.post(
        "/users/",
        json={"username": "su2", "password": PASSWORD, "is_superuser": True},
        headers=root,
    )
    body = await user_body(su, 201)
    assert body["is_superuser"] is True and body["is_active"] is True
    assert su.headers["Location"] == "/users/su2"
    off = await client.post(
        "/users/",
        json={"username": "off", "password": PASSWORD, "is_active": False},
        headers=root,
    )
    body = await user_body(off, 201)
    assert body["is_superuser"] is False and body["is_active"] is False
    for flag in ({"is_superuser": "yes"}, {"is_active": 1}, {"is_superuser": None}):
        bad = await client.post(
            "/users/", json={"username": "strict", "password": PASSWORD, **flag}, headers=root
        )
        await validation_errors(bad, *flag)
    assert await rows_named(database, "strict") == []


# --- usernames and field rules -------------------------------------------------------------


async def test_usernames_are_unique_ignoring_case(client: Client, database: Database) -> None:
    assert (await signup(client, "Alice")).status == 201
    for clash in ("alice", "ALICE", "aLiCe"):
        await problem(await signup(client, clash), 409, USERNAME_TAKEN)
    assert len(await rows_named(database, "alice")) == 1
    # Login and lookup match ignoring case.
    token = await login_token(client, "ALICE")
    assert (await user_body(await client.get("/users/me", headers=bearer(token))))[
        "username"
    ] == "Alice"
    root = await make_user(database, "root", is_superuser=True)
    got = await user_body(await client.get("/users/ALICE", headers=await auth(database, root.id)))
    assert got["username"] == "Alice"
    got = await user_body(await client.get("/users/alice", headers=bearer(token)))
    assert got["username"] == "Alice"


async def test_superuser_create_also_refuses_a_taken_name(
    client: Client, database: Database
) -> None:
    root = await make_user(database, "root", is_superuser=True)
    await make_user(database, "alice")
    response = await client.post(
        "/users/",
        json={"username": "ALICE", "password": PASSWORD},
        headers=await auth(database, root.id),
    )
    await problem(response, 409, USERNAME_TAKEN)


INVALID_SIGNUPS = [
    {"username": "me"},
    {"username": "ME"},
    {"username": "Me"},
    {"username": "a"},
    {"username": "x" * 65},
    {"username": "al ice"},
    {"username": " alice"},
    {"username": "alice!"},
    {"username": "al/ice"},
    {"username": "alicé"},
    {"username": ""},
    {"username": 12345},
    {"username": None},
    {"password": "x" * 7},
    {"password": "x" * 129},
    {"password": 12345678},
    {"email": "not-an-email"},
    {"email": "alice@"},
    {"full_name": "x" * 129},
]


async def test_signup_validation(client: Client, database: Database) -> None:
    for invalid in INVALID_SIGNUPS:
        body = {"username": "valid_name", "password": PASSWORD, **invalid}
        response = await client.post("/users/signup", json=body)
        assert response.status == 422, (invalid, await response.text())
        await validation_errors(response, *invalid)
    for missing in ("username", "password"):
        body = {"username": "valid_name", "password": PASSWORD}
        del body[missing]
        await validation_errors(await client.post("/users/signup", json=body), missing)
    assert await user_count(database) == 0


async def test_signup_accepts_the_boundaries(client: Client) -> None:
    short = await signup(client, "ab", "x" * 8)
    assert short.status == 201, await short.text()
    long = await signup(client, "a.b_c-" + "x" * 58, "y" * 128, full_name="z" * 128)
    assert long.status == 201, await long.text()
    assert (await login(client, "a.b_c-" + "x" * 58, "y" * 128)).status == 200
    assert (await signup(client, "007")).status == 201  # all digits is a username too


async def test_me_is_reserved_everywhere(client: Client, database: Database) -> None:
    root = await make_user(database, "root", is_superuser=True)
    headers = await auth(database, root.id)
    response = await client.post(
        "/users/", json={"username": "ME", "password": PASSWORD}, headers=headers
    )
    await validation_errors(response, "username")
    await validation_errors(
        await client.patch("/users/me", json={"username": "me"}, headers=headers), "username"
    )
    await validation_errors(
        await client.patch(f"/users/{root.id}", json={"username": "Me"}, headers=headers),
        "username",
    )
    assert (await user_row(database, root.id) or {})["username"] == "root"


async def test_concurrent_signups_of_one_username(client: Client, database: Database) -> None:
    responses = await asyncio.gather(*(signup(client, "racer") for _ in range(20)))
    statuses = Counter(r.status for r in responses)
    assert statuses == {201: 1, 409: 19}, statuses
    for response in responses:
        if response.status == 409:
            assert (await response.json())["detail"] == USERNAME_TAKEN
    assert len(await rows_named(database, "racer")) == 1


# --- the users list ------------------------------------------------------------------------


async def test_users_list_pages_by_id(client: Client, database: Database) -> None:
    root = await make_user(database, "root", is_superuser=True)
    names = [f"user{n}" for n in range(6)]
    created = [root] + [await make_user(database, name) for name in names]
    ids = [u.id for u in created]
    headers = await auth(database, root.id)

    async def page(query: str) -> dict[str, Any]:
        response = await client.get(f"/users/?{query}", headers=headers)
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        for item in body["data"]:
            assert set(item) == USER_KEYS
        return body

    everyone = await page("")
    assert [u["id"] for u in everyone["data"]] == ids == sorted(ids)
    assert everyone["count"] == 7
    middle = await page("skip=2&limit=3")
    assert [u["id"] for u in middle["data"]] == ids[2:5]
    assert middle["count"] == 7
    assert (await page("skip=100"))["data"] == []
    assert (await page("skip=100"))["count"] == 7
    assert len((await page("limit=1"))["data"]) == 1
    assert len((await page("limit=1000"))["data"]) == 7
    for bad in ("limit=0", "limit=1001", "limit=-1", "limit=abc", "limit=2.5"):
        await validation_errors(await client.get(f"/users/?{bad}", headers=headers), "limit")
    for bad in ("skip=-1", "skip=x"):
        await validation_errors(await client.get(f"/users/?{bad}", headers=headers), "skip")


async def test_users_list_default_limit_is_100(client: Client, database: Database) -> None:
    root = await make_user(database, "root", is_superuser=True)
    async with database.transaction() as conn:
        for n in range(100):
            await conn.execute(
                "INSERT INTO users (username, hashed_password, created_at, updated_at)"
                " VALUES (:name, 'x', '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')",
                {"name": f"bulk{n}"},
            )
    response = await client.get("/users", headers=await auth(database, root.id))
    body = await response.json()
    assert len(body["data"]) == 100 and body["count"] == 101


# --- PATCH /users/{user_id} ----------------------------------------------------------------


async def test_own_password_change_needs_the_current_password(
    client: Client, database: Database
) -> None:
    alice = await make_user(database, "alice")
    token = await login_token(client, "alice")
    path = f"/users/{alice.id}"
    before = await user_row(database, alice.id)
    missing = await client.patch(path, json={"password": "stolen token pw"}, headers=bearer(token))
    await validation_errors(missing, "current_password")
    wrong = await client.patch(
        path,
        json={"password": "stolen token pw", "current_password": "not my password"},
        headers=bearer(token),
    )
    await problem(wrong, 400)
    assert await user_row(database, alice.id) == before
    assert (await client.get("/users/me", headers=bearer(token))).status == 200
    right = await client.patch(
        path,
        json={"password": "my new password", "current_password": PASSWORD},
        headers=bearer(token),
    )
    await user_body(right)
    await problem(await login(client, "alice", PASSWORD), 401)
    assert (await login(client, "alice", "my new password")).status == 200


async def test_own_password_change_through_me_password(client: Client, database: Database) -> None:
    alice = await make_user(database, "alice")
    headers = await auth(database, alice.id)
    wrong = await client.patch(
        "/users/me/password",
        json={"current_password": "not my password", "new_password": "my new password"},
        headers=headers,
    )
    await problem(wrong, 400)
    await validation_errors(
        await client.patch(
            "/users/me/password",
            json={"current_password": PASSWORD, "new_password": "short"},
            headers=headers,
        ),
        "new_password",
    )
    await validation_errors(
        await client.patch(
            "/users/me/password", json={"new_password": "my new password"}, headers=headers
        ),
        "current_password",
    )
    assert (await login(client, "alice", PASSWORD)).status == 200


async def test_a_superuser_changes_another_password_without_the_current_one(
    client: Client, database: Database
) -> None:
    root = await make_user(database, "root", is_superuser=True)
    bob = await make_user(database, "bob")
    response = await client.patch(
        f"/users/{bob.id}",
        json={"password": "set by the admin"},
        headers=await auth(database, root.id),
    )
    await user_body(response)
    assert (await login(client, "bob", "set by the admin")).status == 200
    # His own password, though, needs the current one like anybody's.
    own = await client.patch(
        f"/users/{root.id}",
        json={"password": "root new password"},
        headers=await auth(database, root.id),
    )
    await validation_errors(own, "current_password")


async def test_renaming_to_a_taken_username_is_409(client: Client, database: Database) -> None:
    await make_user(database, "alice")
    bob = await make_user(database, "bob")
    root = await make_user(database, "root", is_superuser=True)
    await problem(
        await client.patch(
            f"/users/{bob.id}", json={"username": "ALICE"}, headers=await auth(database, bob.id)
        ),
        409,
        USERNAME_TAKEN,
    )
    await problem(
        await client.patch(
            "/users/me", json={"username": "alice"}, headers=await auth(database, bob.id)
        ),
        409,
        USERNAME_TAKEN,
    )
    await problem(
        await client.patch(
            f"/users/{bob.id}", json={"username": "Root"}, headers=await auth(database, root.id)
        ),
        409,
        USERNAME_TAKEN,
    )
    assert (await user_row(database, bob.id) or {})["username"] == "bob"
    # Changing the case of one's own name is no conflict.
    renamed = await client.patch(
        "/users/me", json={"username": "BOB"}, headers=await auth(database, bob.id)
    )
    assert (await user_body(renamed))["username"] == "BOB"


async def test_superuser_updates_flags_and_profile(client: Client, database: Database) -> None:
    root = await make_user(database, "root", is_superuser=True)
    bob = await make_user(database, "bob")
    headers = await auth(database, root.id)
    body = await user_body(
        await client.patch(
            f"/users/{bob.id}",
            json={"is_superuser": True, "email": "bob@example.com", "full_name": None},
            headers=headers,
        )
    )
    assert body["is_superuser"] is True and body["email"] == "bob@example.com"
    assert (await user_row(database, bob.id) or {})["is_superuser"] == 1
    await validation_errors(
        await client.patch(f"/users/{bob.id}", json={"is_active": "no"}, headers=headers),
        "is_active",
    )


async def test_the_last_active_superuser_cannot_be_demoted_or_deactivated(
    client: Client, database: Database
) -> None:
    root = await make_user(database, "root", is_superuser=True)
    await make_user(database, "dormant", is_superuser=True, is_active=False)  # does not count
    headers = await auth(database, root.id)
    before = await user_row(database, root.id)
    for change in (
        {"is_superuser": False},
        {"is_active": False},
        {"is_active": False, "is_superuser": False},
    ):
        response = await client.patch(f"/users/{root.id}", json=change, headers=headers)
        await problem(response, LAST_SUPERUSER)
    assert await user_row(database, root.id) == before

    second = await client.post(
        "/users/",
        json={"username": "second", "password": PASSWORD, "is_superuser": True},
        headers=headers,
    )
    second_id = (await user_body(second, 201))["id"]
    demoted = await client.patch(f"/users/{root.id}", json={"is_superuser": False}, headers=headers)
    assert (await user_body(demoted))["is_superuser"] is False
    # Now "second" is the last one, and cannot be deactivated by himself.
    response = await client.patch(
        f"/users/{second_id}", json={"is_active": False}, headers=await auth(database, second_id)
    )
    await problem(response, LAST_SUPERUSER)


async def test_patch_by_id_routing(client: Client, database: Database) -> None:
    root = await make_user(database, "root", is_superuser=True)
    headers = await auth(database, root.id)
    for path in ("/users/0", "/users/-1", "/users/abc", "/users/99999999999999999999999"):
        await problem(await client.patch(path, json={"full_name": "x"}, headers=headers), 404)
        await problem(await client.delete(path, headers=headers), 404)


# --- deletion ------------------------------------------------------------------------------


async def test_ids_are_never_reused(client: Client, database: Database) -> None:
    root = await make_user(database, "root", is_superuser=True)
    headers = await auth(database, root.id)
    first = (await user_body(await signup(client, "first"), 201))["id"]
    newest = (await user_body(await signup(client, "newest"), 201))["id"]
    assert (await client.delete(f"/users/{newest}", headers=headers)).status == 204
    assert await user_row(database, newest) is None
    again = (await user_body(await signup(client, "again"), 201))["id"]
    assert again > newest > first
    # Deleting oneself as the newest user does not free the id either.
    me = await client.delete("/users/me", headers=await auth(database, again))
    assert me.status == 204
    later = (await user_body(await signup(client, "later"), 201))["id"]
    assert later > again
    await problem(await client.delete(f"/users/{newest}", headers=headers), 404)


async def test_superuser_deletes_another_superuser_but_never_himself(
    client: Client, database: Database
) -> None:
    root = await make_user(database, "root", is_superuser=True)
    other = await make_user(database, "other", is_superuser=True)
    headers = await auth(database, root.id)
    await problem(
        await client.delete(f"/users/{root.id}", headers=headers),
        403,
        "Super users are not allowed to delete themselves",
    )
    await problem(
        await client.delete("/users/me", headers=headers),
        403,
        "Super users are not allowed to delete themselves",
    )
    assert (await client.delete(f"/users/{other.id}", headers=headers)).status == 204
    assert await user_row(database, root.id) is not None
    assert await user_row(database, other.id) is None


# --- found by review: each of these answered a 500, broke a rule, or leaked a secret ---------


async def test_a_username_with_a_trailing_newline_is_refused(client: Client) -> None:
    """`$` in re.match also matches before a final newline; the user was created and the
    Location header then broke the response."""
    response = await client.post(
        "/users/signup", json={"username": "bob\n", "password": "correct horse battery"}
    )
    errors = await validation_errors(response)
    assert "username" in errors


async def test_a_demotion_racing_a_password_change_is_not_undone(
    client: Client, database: Database
) -> None:
    """The password route wrote back the caller as the auth middleware had read him."""
    await make_user(database, "root", is_superuser=True)
    eve = await make_user(database, "eve", is_superuser=True)
    app = client.app
    assert app is not None
    hasher = app[keys.PASSWORDS]
    demoted, real_hash = asyncio.Event(), hasher.hash

    async def slow_hash(password: str) -> str:
        await demoted.wait()
        return await real_hash(password)

    hasher.hash = slow_hash  # type: ignore[method-assign]
    change = asyncio.create_task(
        client.patch(
            "/users/me/password",
            json={"current_password": PASSWORD, "new_password": "a brand new secret"},
            headers=await auth(database, eve.id),
        )
    )
    await asyncio.sleep(0.3)  # eve's request is now waiting in the hash
    root_headers = await auth(database, (await rows_named(database, "root"))[0]["id"])
    demote = await client.patch(
        f"/users/{eve.id}", json={"is_superuser": False, "is_active": False}, headers=root_headers
    )
    assert demote.status == 200
    demoted.set()
    assert (await change).status == 204
    row = await user_row(database, eve.id)
    assert row is not None
    assert (row["is_superuser"], row["is_active"]) == (0, 0)


async def test_a_session_id_or_username_with_a_nul_names_nothing(
    client: Client, database: Database
) -> None:
    """PostgreSQL cannot even compare text holding a NUL: such names must not reach it."""
    root = await make_user(database, "root", is_superuser=True)
    headers = await auth(database, root.id)
    for path in ("/users/me/sessions/ab%00c", "/users/al%00ice", "/users/al%ED%A0%80ice"):
        response = await client.request(
            "DELETE" if "sessions" in path else "GET", URL(path, encoded=True), headers=headers
        )
        await problem(response, 404)
