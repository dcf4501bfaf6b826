"""Authentication and access control (API.md: General, Authentication, Users)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import stat
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from service.app import create_app
from service.db import Database
from service.queries.users import User
from service.settings import ProductWriteAccess, Settings
from tests.conftest import TEST_SECRET_KEY
from tests.helpers import problem
from tests.helpers_auth import (
    DROP,
    INACTIVE,
    NO_PRIVILEGES,
    OTHER_KEY,
    PASSWORD,
    SELF_DELETE,
    Client,
    auth,
    b64url,
    bearer,
    claims_token,
    login_token,
    make_user,
    rows_named,
    token_claims,
    unsigned_token,
    user_body,
    user_row,
)

ClientFactory = Callable[..., Any]

# --- the access matrix ---------------------------------------------------------------------

ACTORS = ("anonymous", "user", "other", "superuser", "inactive")
UNAUTH = (401, None)
DENIED = (403, NO_PRIVILEGES)
OFF = (403, INACTIVE)
NOT_FOUND = (404, "User not found")
MISSING_ID = 999_999


@dataclasses.dataclass(frozen=True)
class World:
    root: User
    alice: User
    bob: User
    ghost: User  # inactive
    carol: User  # the one superusers get to delete

    def actor(self, name: str) -> User | None:
        return {
            "anonymous": None,
            "user": self.alice,
            "other": self.bob,
            "superuser": self.root,
            "inactive": self.ghost,
        }[name]

    def subject(self, name: str) -> User:
        """Whose resources the actor reaches for: alice, or the inactive user himself."""
        return self.ghost if name == "inactive" else self.alice


@pytest.fixture
async def world(database: Database) -> World:
    return World(
        root=await make_user(database, "root", is_superuser=True),
        alice=await make_user(database, "alice", full_name="Alice"),
        bob=await make_user(database, "bob"),
        ghost=await make_user(database, "ghost", is_active=False),
        carol=await make_user(database, "carol"),
    )


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str  # placeholders: {subject}, {SUBJECT}, {subject_id}, {self_id}, {victim_id}, {actor}
    body: dict[str, Any] | None
    # anonymous, user, other, superuser, inactive
    expect: tuple[tuple[int, str | None], ...]


CASES = (
    Case(
        "signup",
        "POST",
        "/users/signup",
        {"username": "new-{actor}", "password": PASSWORD},
        ((201, None),) * 5,
    ),
    Case(
        "create",
        "POST",
        "/users/",
        {"username": "made-{actor}", "password": PASSWORD},
        (UNAUTH, DENIED, DENIED, (201, None), OFF),
    ),
    Case(
        "create without slash",
        "POST",
        "/users",
        {"username": "made2-{actor}", "password": PASSWORD},
        (UNAUTH, DENIED, DENIED, (201, None), OFF),
    ),
    Case("list", "GET", "/users/", None, (UNAUTH, DENIED, DENIED, (200, None), OFF)),
    Case("list without slash", "GET", "/users", None, (UNAUTH, DENIED, DENIED, (200, None), OFF)),
    Case("read me", "GET", "/users/me", None, (UNAUTH, (200, None), (200, None), (200, None), OFF)),
    Case(
        "test token",
        "POST",
        "/login/test-token",
        None,
        (UNAUTH, (200, None), (200, None), (200, None), OFF),
    ),
    Case(
        "patch me",
        "PATCH",
        "/users/me",
        {"full_name": "Changed by {actor}"},
        (UNAUTH, (200, None), (200, None), (200, None), OFF),
    ),
    Case(
        "read by username",
        "GET",
        "/users/{subject}",
        None,
        (UNAUTH, (200, None), DENIED, (200, None), OFF),
    ),
    Case(
        "read by username, other case",
        "GET",
        "/users/{SUBJECT}",
        None,
        (UNAUTH, (200, None), DENIED, (200, None), OFF),
    ),
    Case(
        "read unknown username",
        "GET",
        "/users/nobody",
        None,
        (UNAUTH, DENIED, DENIED, NOT_FOUND, OFF),
    ),
    Case(
        "patch by id",
        "PATCH",
        "/users/{subject_id}",
        {"full_name": "Patched by {actor}"},
        (UNAUTH, (200, None), DENIED, (200, None), OFF),
    ),
    Case(
        "patch unknown id",
        "PATCH",
        f"/users/{MISSING_ID}",
        {"full_name": "Nobody"},
        (UNAUTH, DENIED, DENIED, NOT_FOUND, OFF),
    ),
    Case(
        "delete self by id",
        "DELETE",
        "/users/{self_id}",
        None,
        (UNAUTH, DENIED, DENIED, (403, SELF_DELETE), OFF),
    ),
    Case(
        "delete unknown id",
        "DELETE",
        f"/users/{MISSING_ID}",
        None,
        (UNAUTH, DENIED, DENIED, NOT_FOUND, OFF),
    ),
    Case(
        "delete another user",
        "DELETE",
        "/users/{victim_id}",
        None,
        (UNAUTH, DENIED, DENIED, (204, None), OFF),
    ),
    Case(
        "change my password",
        "PATCH",
        "/users/me/password",
        {"current_password": PASSWORD, "new_password": "a brand new password"},
        (UNAUTH, (204, None), (204, None), (204, None), OFF),
    ),
    Case(
        "delete me",
        "DELETE",
        "/users/me",
        None,
        (UNAUTH, (204, None), (204, None), (403, SELF_DELETE), OFF),
    ),
)


def _fill(text: str, world: World, actor_name: str) -> str:
    actor, subject = world.actor(actor_name), world.subject(actor_name)
    return (
        text.replace("{subject}", subject.username)
        .replace("{SUBJECT}", subject.username.upper())
        .replace("{subject_id}", str(subject.id))
        .replace("{self_id}", str((actor or subject).id))
        .replace("{victim_id}", str(world.carol.id))
        .replace("{actor}", actor_name)
    )


@pytest.mark.parametrize("actor_name", ACTORS)
async def test_access_matrix(
    client: Client, database: Database, world: World, actor_name: str
) -> None:
    actor = world.actor(actor_name)
    column = ACTORS.index(actor_name)
    mismatches = []
    for case in CASES:
        status, detail = case.expect[column]
        path = _fill(case.path, world, actor_name)
        body = (
            None
            if case.body is None
            else {k: _fill(v, world, actor_name) for k, v in case.body.items()}
        )
        # A fresh token for every request: the password change bumps the token version.
        headers = await auth(database, actor.id) if actor is not None else {}
        response = await client.request(case.method, path, json=body, headers=headers)
        text = await response.text()
        if response.status != status:
            mismatches.append(f"{case.name}: {case.method} {path} -> {response.status} {text}")
            continue
        if status >= 400:
            got = json.loads(text)
            if detail is not None and got["detail"] != detail:
                mismatches.append(f"{case.name}: detail {got['detail']!r} != {detail!r}")
            if status == 401 and response.headers.get("WWW-Authenticate") != "Bearer":
                mismatches.append(f"{case.name}: 401 without WWW-Authenticate: Bearer")
        assert "$argon2" not in text and "hashed_password" not in text
    assert not mismatches, "\n".join(mismatches)

    # What the refused requests did not do, and what the allowed ones did.
    alice = await user_row(database, world.alice.id)
    carol = await user_row(database, world.carol.id)
    assert alice is not None or actor_name == "user"  # only alice may delete alice
    if actor_name in ("anonymous", "other", "inactive"):
        assert alice is not None and alice["full_name"] == "Alice"
    if actor_name == "superuser":
        assert carol is None
        assert alice is not None and alice["full_name"] == "Patched by superuser"
        assert await user_row(database, world.root.id) is not None
    else:
        assert carol is not None
    if actor_name in ("user", "other"):
        assert actor is not None and await user_row(database, actor.id) is None
    made = await rows_named(database, f"made-{actor_name}")
    assert len(made) == (1 if actor_name == "superuser" else 0)
    assert len(await rows_named(database, f"new-{actor_name}")) == 1


async def test_success_bodies_name_the_right_user(
    client: Client, database: Database, world: World
) -> None:
    alice, root = await auth(database, world.alice.id), await auth(database, world.root.id)
    me = await user_body(await client.get("/users/me", headers=alice))
    assert me["username"] == "alice" and me["id"] == world.alice.id
    checked = await user_body(await client.post("/login/test-token", headers=alice))
    assert checked == me
    by_root = await user_body(await client.get("/users/ALICE", headers=root))
    assert by_root == me
    listed = await client.get("/users/", headers=root)
    page = await listed.json()
    assert [u["username"] for u in page["data"]] == ["root", "alice", "bob", "ghost", "carol"]
    assert page["count"] == 5


# --- every cause of 401 --------------------------------------------------------------------


def _tampered(user_id: int, version: int, new_sub: str) -> str:
    header, _, signature = claims_token(user_id, version).split(".")
    payload = b64url(json.dumps(token_claims(user_id, version, sub=new_sub)).encode())
    return f"{header}.{payload}.{signature}"


BAD_HEADERS: dict[str, Callable[[World], dict[str, str]]] = {
    "missing header": lambda w: {},
    "empty header": lambda w: {"Authorization": ""},
    "scheme only": lambda w: {"Authorization": "Bearer"},
    "scheme and blanks": lambda w: {"Authorization": "Bearer    "},
    "no space": lambda w: {"Authorization": "Bearer" + claims_token(w.alice.id, 1)},
    "basic scheme": lambda w: {"Authorization": "Basic YWxpY2U6Y29ycmVjdCBob3JzZQ=="},
    "token scheme": lambda w: {"Authorization": "Token " + claims_token(w.alice.id, 1)},
    "garbage": lambda w: bearer("garbage"),
    "three garbage parts": lambda w: bearer("a.b.c"),
    "expired": lambda w: bearer(
        claims_token(w.alice.id, 1, iat=int(time.time()) - 7200, exp=int(time.time()) - 60)
    ),
    "tampered payload": lambda w: bearer(_tampered(w.alice.id, 1, str(w.root.id))),
    "another key": lambda w: bearer(claims_token(w.alice.id, 1, key=OTHER_KEY)),
    "alg none": lambda w: bearer(unsigned_token(token_claims(w.alice.id, 1))),
    "missing sub": lambda w: bearer(claims_token(w.alice.id, 1, sub=DROP)),
    "missing exp": lambda w: bearer(claims_token(w.alice.id, 1, exp=DROP)),
    "missing iat": lambda w: bearer(claims_token(w.alice.id, 1, iat=DROP)),
    "missing ver": lambda w: bearer(claims_token(w.alice.id, 1, ver=DROP)),
    "sub not a string": lambda w: bearer(claims_token(w.alice.id, 1, sub=w.alice.id)),
    "sub a username": lambda w: bearer(claims_token(w.alice.id, 1, sub="alice")),
    "sub of nobody": lambda w: bearer(claims_token(MISSING_ID, 1)),
    # Signed, but never issued: none of these may reach the database or become a 500.
    "sub beyond SQLite integers": lambda w: bearer(claims_token(w.alice.id, 1, sub="9" * 19)),
    "sub a superscript digit": lambda w: bearer(claims_token(w.alice.id, 1, sub="\u00b2")),
    "sub an Arabic-Indic digit": lambda w: bearer(claims_token(w.alice.id, 1, sub="\u0661")),
    "sub negative": lambda w: bearer(claims_token(w.alice.id, 1, sub="-1")),
    "ver a float": lambda w: bearer(claims_token(w.alice.id, 1.0)),
    "stale ver": lambda w: bearer(claims_token(w.alice.id, 0)),
    "future ver": lambda w: bearer(claims_token(w.alice.id, 2)),
    "ver a boolean": lambda w: bearer(claims_token(w.alice.id, True)),
    "ver a string": lambda w: bearer(claims_token(w.alice.id, "1")),
}


async def test_every_bad_credential_is_401_with_www_authenticate(
    client: Client, world: World
) -> None:
    # The crafted token, made valid, is accepted: each refusal is for its cause alone.
    valid = claims_token(world.alice.id, 1)
    assert (await client.get("/users/me", headers=bearer(valid))).status == 200
    mismatches = []
    for cause, make_headers in BAD_HEADERS.items():
        headers = make_headers(world)
        for method, path in (("GET", "/users/me"), ("POST", "/login/test-token")):
            response = await client.request(method, path, headers=headers)
            text = await response.text()
            if response.status != 401:
                mismatches.append(f"{cause}: {method} {path} -> {response.status} {text}")
            elif response.headers.get("WWW-Authenticate") != "Bearer":
                mismatches.append(f"{cause}: {method} {path} lacks WWW-Authenticate: Bearer")
            elif response.content_type != "application/problem+json":
                mismatches.append(f"{cause}: {method} {path} is not a problem document")
    assert not mismatches, "\n".join(mismatches)
    # A bad token on a superuser-only route is 401, not 403.
    expired = claims_token(world.root.id, 1, exp=int(time.time()) - 1)
    await problem(await client.get("/users/", headers=bearer(expired)), 401)
    await problem(await client.delete(f"/users/{world.bob.id}", headers=bearer(expired)), 401)


async def test_a_token_accepted_before_is_refused_once_it_expires(
    client: Client, world: World
) -> None:
    """Verified tokens are remembered; the memory must not outlive the token's `exp`."""
    expires_at = int(time.time()) + 2  # at least a second to use it in
    token = claims_token(world.alice.id, 1, exp=expires_at)
    for _ in range(2):  # the second use is answered from what the first one verified
        assert (await client.get("/users/me", headers=bearer(token))).status == 200
    await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.01)
    await problem(await client.get("/users/me", headers=bearer(token)), 401)


async def test_deleted_users_token_is_refused_at_once(
    client: Client, database: Database, world: World
) -> None:
    token = await login_token(client, "bob")
    claims = jwt.decode(token, TEST_SECRET_KEY, algorithms=["HS256"])
    assert claims["sub"] == str(world.bob.id)
    me = await user_body(await client.get("/users/me", headers=bearer(token)))
    assert me["id"] == world.bob.id
    deleted = await client.delete(
        f"/users/{world.bob.id}", headers=await auth(database, world.root.id)
    )
    assert deleted.status == 204
    await problem(await client.get("/users/me", headers=bearer(token)), 401)
    await problem(await client.post("/login/test-token", headers=bearer(token)), 401)


async def test_deleting_oneself_refuses_ones_token_at_once(client: Client, world: World) -> None:
    token = await login_token(client, "alice")
    assert (await client.delete("/users/me", headers=bearer(token))).status == 204
    await problem(await client.get("/users/me", headers=bearer(token)), 401)


async def test_token_issued_in_the_same_second_as_a_password_change_is_refused(
    client: Client, database: Database, world: World
) -> None:
    old = await login_token(client, "alice")
    old_version = jwt.decode(old, TEST_SECRET_KEY, algorithms=["HS256"])["ver"]
    changed = await client.patch(
        "/users/me/password",
        json={"current_password": PASSWORD, "new_password": "another long secret"},
        headers=bearer(old),
    )
    assert changed.status == 204, await changed.text()
    await problem(await client.get("/users/me", headers=bearer(old)), 401)
    # `iat` has one-second resolution: a token of the old version stamped in the very
    # second of the change (or even later) must be refused all the same.
    now = int(time.time())
    for issued_at in (now, now + 1):
        same_second = claims_token(world.alice.id, old_version, iat=issued_at, exp=now + 3600)
        await problem(await client.get("/users/me", headers=bearer(same_second)), 401)
    # The new password's tokens, from the same second, work.
    new = await login_token(client, "alice", "another long secret")
    assert (await client.get("/users/me", headers=bearer(new))).status == 200
    # Every other session ended with the change (ASVS 7.4.3), so even a token of the
    # current version for another session is refused.
    await problem(await client.get("/users/me", headers=await auth(database, world.alice.id)), 401)


async def test_password_change_through_patch_by_id_refuses_older_tokens(
    client: Client, database: Database, world: World
) -> None:
    old = await login_token(client, "alice")
    changed = await client.patch(
        f"/users/{world.alice.id}",
        json={"current_password": PASSWORD, "password": "another long secret"},
        headers=bearer(old),
    )
    assert changed.status == 200, await changed.text()
    await problem(await client.get("/users/me", headers=bearer(old)), 401)
    # And a superuser resetting bob's password refuses bob's tokens too.
    bobs = await login_token(client, "bob")
    reset = await client.patch(
        f"/users/{world.bob.id}",
        json={"password": "reset by the admin"},
        headers=await auth(database, world.root.id),
    )
    assert reset.status == 200, await reset.text()
    await problem(await client.get("/users/me", headers=bearer(bobs)), 401)


async def test_deactivated_users_token_gets_403_inactive(
    client: Client, database: Database, world: World
) -> None:
    token = await login_token(client, "alice")
    # Changes other than the password keep the token valid.
    patched = await client.patch("/users/me", json={"full_name": "A"}, headers=bearer(token))
    assert patched.status == 200
    assert (await client.get("/users/me", headers=bearer(token))).status == 200
    off = await client.patch(
        f"/users/{world.alice.id}",
        json={"is_active": False},
        headers=await auth(database, world.root.id),
    )
    assert off.status == 200
    await problem(await client.get("/users/me", headers=bearer(token)), 403, INACTIVE)


async def test_public_routes_ignore_a_stale_or_foreign_authorization_header(
    client: Client, world: World
) -> None:
    # Only protected routes take credentials; as in the original system, a public route
    # does not fail because a client still sends an expired token (or a Basic header).
    expired = claims_token(world.alice.id, 1, exp=int(time.time()) - 60)
    for header in (f"Bearer {expired}", "Bearer garbage", "Basic Og=="):
        headers = {"Authorization": header}
        assert (await client.get("/products/", headers=headers)).status == 200
        assert (await client.get("/health", headers=headers)).status == 200
        created = await client.post("/products/", json={"name": "Tea", "price": 1}, headers=headers)
        assert created.status == 201, await created.text()
    signed_up = await client.post(
        "/users/signup",
        json={"username": "newbie", "password": PASSWORD},
        headers={"Authorization": f"Bearer {expired}"},
    )
    assert signed_up.status == 201, await signed_up.text()


# --- order of checks -----------------------------------------------------------------------

BAD_BODY = b'{"username": 5, "is_superuser": "yes"'  # not even JSON


async def test_no_token_is_401_before_a_bad_body(client: Client, world: World) -> None:
    routes = [
        ("POST", "/users/"),
        ("POST", "/users"),
        ("PATCH", "/users/me"),
        ("PATCH", "/users/me/password"),
        ("PATCH", f"/users/{world.alice.id}"),
        ("PATCH", f"/users/{MISSING_ID}"),
        ("POST", "/login/test-token"),
    ]
    for method, path in routes:
        for body in (BAD_BODY, b'{"username": 5, "is_superuser": "yes", "extra": 1}'):
            response = await client.request(
                method, path, data=body, headers={"Content-Type": "application/json"}
            )
            assert response.status == 401, (method, path, body, await response.text())
            await problem(response, 401)
    await problem(await client.get("/users/?limit=0"), 401)


async def test_role_is_checked_before_the_body_on_superuser_routes(
    client: Client, database: Database, world: World
) -> None:
    alice = await auth(database, world.alice.id)
    json_headers = {**alice, "Content-Type": "application/json"}
    await problem(
        await client.post("/users/", data=BAD_BODY, headers=json_headers), 403, NO_PRIVILEGES
    )
    await problem(
        await client.post("/users/", json={"username": 1}, headers=alice), 403, NO_PRIVILEGES
    )
    await problem(await client.get("/users/?limit=0", headers=alice), 403, NO_PRIVILEGES)
    ghost = await auth(database, world.ghost.id)
    await problem(
        await client.patch("/users/me", json={"is_superuser": True}, headers=ghost), 403, INACTIVE
    )
    # The control: a superuser with the same bodies gets the validation errors.
    root = {**await auth(database, world.root.id), "Content-Type": "application/json"}
    await problem(await client.post("/users/", data=BAD_BODY, headers=root), 400)
    await problem(await client.post("/users/", data=b'{"username": 1}', headers=root), 422)
    await problem(await client.get("/users/?limit=0", headers=root), 422)


async def test_a_malformed_body_is_422_before_the_right_to_the_object(
    client: Client, database: Database, world: World
) -> None:
    bob = await auth(database, world.bob.id)
    response = await client.patch(
        f"/users/{world.alice.id}", json={"email": "not-an-email"}, headers=bob
    )
    await problem(response, 422)
    response = await client.patch(f"/users/{world.alice.id}", json={"full_name": "x"}, headers=bob)
    await problem(response, 403, NO_PRIVILEGES)


# --- PRODUCT_WRITE_ACCESS ------------------------------------------------------------------


async def _client_with(aiohttp_client: ClientFactory, settings: Settings) -> Client:
    client: Client = await aiohttp_client(create_app(settings))
    return client


async def test_product_writes_for_users(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    client = await _client_with(
        aiohttp_client, dataclasses.replace(migrated, product_write_access=ProductWriteAccess.USER)
    )
    alice = await make_user(database, "alice")
    ghost = await make_user(database, "ghost", is_active=False)
    tea = {"name": "Tea", "price": 4.5}
    for path in ("/products/", "/products"):
        await problem(await client.post(path, json=tea), 401)
    await problem(
        await client.post("/products/", json=tea, headers=await auth(database, ghost.id)),
        403,
        INACTIVE,
    )
    created = await client.post("/products/", json=tea, headers=await auth(database, alice.id))
    assert created.status == 201, await created.text()
    product_id = (await created.json())["id"]
    # Reads stay public.
    assert (await client.get("/products/")).status == 200
    assert (await client.get(f"/products/{product_id}")).status == 200
    for method in ("PUT", "PATCH"):
        response = await client.request(method, f"/products/{product_id}", json={"price": 1})
        await problem(response, 401)
    await problem(await client.delete(f"/products/{product_id}"), 401)
    changed = await client.patch(
        f"/products/{product_id}", json={"price": 5}, headers=await auth(database, alice.id)
    )
    assert changed.status == 200
    assert (await (await client.get(f"/products/{product_id}")).json())["price"] == 5


async def test_product_writes_for_superusers(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    client = await _client_with(
        aiohttp_client,
        dataclasses.replace(migrated, product_write_access=ProductWriteAccess.SUPERUSER),
    )
    alice = await auth(database, (await make_user(database, "alice")).id)
    root = await auth(database, (await make_user(database, "root", is_superuser=True)).id)
    tea = {"name": "Tea", "price": 4.5}
    await problem(await client.post("/products/", json=tea), 401)
    await problem(await client.post("/products/", json=tea, headers=alice), 403, NO_PRIVILEGES)
    await problem(await client.post("/products", json=tea, headers=alice), 403, NO_PRIVILEGES)
    created = await client.post("/products/", json=tea, headers=root)
    assert created.status == 201
    product_id = (await created.json())["id"]
    assert (await client.get(f"/products/{product_id}")).status == 200
    assert (await client.get("/products")).status == 200
    await problem(await client.delete(f"/products/{product_id}", headers=alice), 403, NO_PRIVILEGES)
    assert (await client.delete(f"/products/{product_id}", headers=root)).status == 204


# --- the signing key -----------------------------------------------------------------------


async def test_without_secret_key_a_key_file_is_made_once_and_tokens_survive_restart(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    settings = dataclasses.replace(migrated, secret_key=None)
    key_file = settings.database_path.with_name(settings.database_path.name + ".secret_key")
    assert not key_file.exists()
    await make_user(database, "alice")
    first: Client = await aiohttp_client(create_app(settings))
    token = await login_token(first, "alice")
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert len(key.encode()) >= 32
    jwt.decode(token, key, algorithms=["HS256"])  # signed with the file's key
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, TEST_SECRET_KEY, algorithms=["HS256"])
    await first.close()

    second: Client = await aiohttp_client(create_app(settings))
    assert (await second.get("/users/me", headers=bearer(token))).status == 200
    assert key_file.read_text().strip() == key
    assert key not in settings.log_file.read_text(encoding="utf-8")


async def test_with_secret_key_tokens_survive_a_restart_and_no_key_file_is_made(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    await make_user(database, "alice")
    first: Client = await aiohttp_client(create_app(migrated))
    token = await login_token(first, "alice")
    await first.close()
    second: Client = await aiohttp_client(create_app(migrated))
    assert (await second.get("/users/me", headers=bearer(token))).status == 200
    assert not migrated.database_path.with_name("test.db.secret_key").exists()
    # Product writes are public by default.
    assert (await second.post("/products/", json={"name": "Tea", "price": 1})).status == 201


async def test_a_non_ascii_bearer_token_is_401(client: Client) -> None:
    """Found by review: a token that cannot be ASCII answered a 500 instead of a 401."""
    response = await client.get("/users/me", headers={"Authorization": "Bearer abc\u00e9.d.e"})
    await problem(response, 401)
