"""PostgreSQL units of work in parallel, and every rule the global write lock used to keep.

Two nodes are two apps, each with its own pools, on one test database. Each race is made
to happen: `meet_before` holds the racing units of work just before their write until
both have arrived, so code that lets both through does let both through (and fails
here); a rule that makes one wait (a row lock, an advisory lock) keeps it from arriving,
and the first goes on alone after a moment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from service import keys
from service.accounts import mailing, throttle
from service.accounts import totp as totp_accounts
from service.app import create_app
from service.db import Database, postgres
from service.housekeeping import purge_once
from service.mail.messages import Kind
from service.queries import account_tokens, mfa_challenges
from service.queries import products as product_queries
from service.queries import sessions as session_queries
from service.queries import users as user_queries
from service.settings import Settings
from tests.conftest import log_lines
from tests.helpers import problem
from tests.helpers_auth import (
    PASSWORD,
    Client,
    auth,
    login,
    make_user,
    session_id,
    signup,
)
from tests.log_hygiene import remember
from tests.test_metrics import scrape, value
from tests.test_totp import Clock, code, enable, mfa_token, second_step

pytestmark = pytest.mark.postgresql_only

Nodes = tuple[Client, Client]
MakeClient = Callable[..., Awaitable[Client]]


async def two_nodes(aiohttp_client: MakeClient, settings: Settings) -> Nodes:
    """Two apps on the same database, as two nodes behind a load balancer."""
    return await aiohttp_client(create_app(settings)), await aiohttp_client(create_app(settings))


@pytest.fixture
async def nodes(aiohttp_client: MakeClient, migrated: Settings) -> Nodes:
    return await two_nodes(aiohttp_client, migrated)


def database(node: Client) -> Database:
    assert node.app is not None
    return node.app[keys.DATABASE]


def meet_before(
    monkeypatch: pytest.MonkeyPatch,
    module: object,
    name: str,
    *,
    parties: int = 2,
    patience: float = 0.5,
) -> list[bool]:
    """Calls of `module.name` wait until `parties` of them are waiting, or `patience` s.

    Returns, per call as it goes on, whether everyone had arrived (False: it gave up waiting).
    """
    original = getattr(module, name)
    arrived = 0
    everyone = asyncio.Event()
    met: list[bool] = []

    async def meeting(*args: Any, **kwargs: Any) -> Any:
        nonlocal arrived
        arrived += 1
        if arrived >= parties:
            everyone.set()
        try:
            await asyncio.wait_for(everyone.wait(), patience)
        except TimeoutError:
            met.append(False)
        else:
            met.append(True)
        return await original(*args, **kwargs)

    monkeypatch.setattr(module, name, meeting)
    return met


async def one(db: Database, sql: str, params: dict[str, object] | None = None) -> Any:
    async with db.read() as conn:
        row = await conn.fetch_one(sql, params)
    assert row is not None
    return row[0]


# --- units of work run in parallel ---------------------------------------------------------


async def test_units_of_work_on_unrelated_rows_overlap_on_one_node_and_across_nodes(
    nodes: Nodes,
) -> None:
    """One unit of work waits, open, for another to commit: a global lock would never let it."""
    a, b = database(nodes[0]), database(nodes[1])
    await overlap(a, a, "one node")
    await overlap(a, b, "two nodes")
    assert await one(a, "SELECT count(*) FROM products") == 4


async def overlap(first: Database, second: Database, label: str) -> None:
    committed = asyncio.Event()

    async def waits_open() -> None:
        async with first.transaction() as conn:
            await product_queries.create_product(conn, name=f"{label} 1", price_cents=1, now="t")
            await asyncio.wait_for(committed.wait(), 5)

    async def commits() -> None:
        async with second.transaction() as conn:
            await product_queries.create_product(conn, name=f"{label} 2", price_cents=2, now="t")
        committed.set()

    await asyncio.gather(waits_open(), commits())


# --- the rules, each raced across two nodes ------------------------------------------------


async def test_two_superusers_demoting_each_other_leave_one(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = database(nodes[0])
    ann = await make_user(db, "ann", is_superuser=True)
    ben = await make_user(db, "ben", is_superuser=True)
    meet_before(monkeypatch, user_queries, "update_user")
    demote = {"is_superuser": False}
    replies = await asyncio.gather(
        nodes[0].patch(f"/users/{ben.id}", json=demote, headers=await auth(db, ann.id)),
        nodes[1].patch(f"/users/{ann.id}", json=demote, headers=await auth(db, ben.id)),
    )
    assert sorted(reply.status for reply in replies) == [200, 409]
    await problem(next(r for r in replies if r.status == 409), 409)
    sql = "SELECT count(*) FROM users WHERE is_superuser AND is_active"
    assert await one(db, sql) == 1


async def test_two_superusers_deleting_each_other_leave_one(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = database(nodes[0])
    ann = await make_user(db, "ann", is_superuser=True)
    ben = await make_user(db, "ben", is_superuser=True)
    meet_before(monkeypatch, user_queries, "delete_user")
    replies = await asyncio.gather(
        nodes[0].delete(f"/users/{ben.id}", headers=await auth(db, ann.id)),
        nodes[1].delete(f"/users/{ann.id}", headers=await auth(db, ben.id)),
    )
    assert sorted(reply.status for reply in replies) == [204, 409]
    assert await one(db, "SELECT count(*) FROM users WHERE is_superuser AND is_active") == 1


async def test_one_username_signed_up_on_both_nodes_at_once_is_one_user(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    meet_before(monkeypatch, user_queries, "create_user", parties=6)
    replies = await asyncio.gather(*(signup(nodes[i % 2], "racer") for i in range(6)))
    assert sorted(reply.status for reply in replies) == [201] + [409] * 5
    assert await one(database(nodes[0]), "SELECT count(*) FROM users") == 1


async def test_parallel_wrong_passwords_on_both_nodes_cannot_pass_the_limit(
    aiohttp_client: MakeClient, migrated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await two_nodes(aiohttp_client, dataclasses.replace(migrated, login_max_failures=3))
    await make_user(database(a), "bob")
    meet_before(monkeypatch, throttle, "record_login_failure", parties=8)
    replies = await asyncio.gather(
        *(login((a, b)[i % 2], "bob", "wrong password") for i in range(8))
    )
    assert sorted(reply.status for reply in replies) == [401] * 3 + [429] * 5
    sql = "SELECT failures FROM login_failures WHERE username = 'bob'"
    assert await one(database(a), sql) == 3
    assert (await login(b, "bob", PASSWORD)).status == 429  # the right one, too late


async def recover_from(node: Client, email: str, client: str) -> Any:
    """A recovery request from `client` (behind the trusted proxy the test client is)."""
    headers = {"X-Forwarded-For": client}
    return await node.post("/password-recovery", json={"email": email}, headers=headers)


def behind_proxy(settings: Settings, **changes: Any) -> Settings:
    proxy = ipaddress.ip_network("127.0.0.1/32")  # the test client's peer
    return dataclasses.replace(settings, forwarded_allow_ips=(proxy,), **changes)


async def test_recoveries_from_two_clients_on_both_nodes_do_not_wait_for_each_other(
    aiohttp_client: MakeClient, migrated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each client's count has its own lock: with one lock for every client, the second
    request waits for the first to commit, and they never meet inside their units of work."""
    a, b = await two_nodes(aiohttp_client, behind_proxy(migrated))
    met = meet_before(monkeypatch, user_queries, "active_by_email", patience=3)
    replies = await asyncio.gather(
        recover_from(a, "one@example.com", "203.0.113.1"),
        recover_from(b, "two@example.com", "203.0.113.2"),
    )
    assert [reply.status for reply in replies] == [202, 202]
    assert met == [True, True]
    sql = "SELECT count(*) FROM login_failures WHERE username = 'recovery#'"
    assert await one(database(a), sql) == 2  # each client counted once


async def test_parallel_recoveries_from_one_client_on_both_nodes_cannot_pass_the_limit(
    aiohttp_client: MakeClient, migrated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await two_nodes(aiohttp_client, behind_proxy(migrated, login_max_failures=2))
    meet_before(monkeypatch, throttle, "record_failure", parties=10)  # two keys a request
    replies = await asyncio.gather(
        *(recover_from((a, b)[i % 2], f"user{i}@example.com", "203.0.113.9") for i in range(5))
    )
    assert sorted(reply.status for reply in replies) == [202] * 2 + [429] * 3
    sql = "SELECT failures FROM login_failures WHERE username = 'recovery#'"
    assert await one(database(a), sql) == 2


async def test_one_refresh_token_spent_on_both_nodes_at_once_ends_its_session(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One winner; the other is a replay, as if it came after: the session ends for both."""
    db = database(nodes[0])
    carol = await make_user(db, "carol")
    response = await login(nodes[0], "carol")
    assert response.status == 200
    spent = (await response.json())["refresh_token"]
    meet_before(monkeypatch, session_queries, "rotate")
    replies = await asyncio.gather(
        *(node.post("/login/refresh", json={"refresh_token": spent}) for node in nodes)
    )
    assert sorted(reply.status for reply in replies) == [200, 401]
    winner = await next(r for r in replies if r.status == 200).json()
    open_sql = (
        "SELECT count(*) FROM sessions WHERE user_id = :id AND ended_at IS NULL "
        "AND id <> :test_session"  # make_user's own session, not the one logged in
    )
    assert await one(db, open_sql, {"id": carol.id, "test_session": session_id(carol.id)}) == 0
    renewed = await nodes[1].post("/login/refresh", json={"refresh_token": winner["refresh_token"]})
    await problem(renewed, 401)
    me = await nodes[1].get(
        "/users/me", headers={"Authorization": f"Bearer {winner['access_token']}"}
    )
    await problem(me, 401)


async def test_if_match_on_both_nodes_at_once_lets_one_write(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await nodes[0].post("/products/", json={"name": "Tea", "price": 4})
    assert created.status == 201
    path, etag = created.headers["Location"], created.headers["ETag"]
    meet_before(monkeypatch, product_queries, "update_product")
    replies = await asyncio.gather(
        nodes[0].patch(path, json={"price": 5}, headers={"If-Match": etag}),
        nodes[1].patch(path, json={"name": "Green tea"}, headers={"If-Match": etag}),
    )
    assert sorted(reply.status for reply in replies) == [200, 412]
    winner = await next(r for r in replies if r.status == 200).json()
    current = await (await nodes[1].get(path)).json()
    assert current == winner  # the loser changed nothing, not even the field it sent


async def test_a_product_written_on_both_nodes_at_once_keeps_both_changes(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without If-Match both win, one after the other: neither writes back a stale field."""
    created = await nodes[0].post("/products/", json={"name": "Tea", "price": 4})
    path = created.headers["Location"]
    meet_before(monkeypatch, product_queries, "update_product")
    replies = await asyncio.gather(
        nodes[0].patch(path, json={"price": 5}), nodes[1].patch(path, json={"name": "Green tea"})
    )
    assert [reply.status for reply in replies] == [200, 200]
    current = await (await nodes[1].get(path)).json()
    assert (current["name"], current["price"]) == ("Green tea", 5)
    assert created.headers["ETag"] != (await nodes[0].get(path)).headers["ETag"]


async def ended_sessions(db: Database, user_id: int, count: int) -> list[str]:
    ids = [f"ended-{user_id}-{i}" for i in range(count)]
    async with db.transaction() as conn:
        for session_id in ids:
            await session_queries.create_session(
                conn,
                session_id=session_id,
                user_id=user_id,
                refresh_token_hash=f"hash-{session_id}",
                expires_at=time.time() + 3600,
                user_agent=None,
                client=None,
            )
            await session_queries.end_session_by_id(conn, session_id=session_id)
    return ids


async def test_the_purge_on_both_nodes_at_once_deletes_each_row_once(nodes: Nodes) -> None:
    db = database(nodes[0])
    dave = await make_user(db, "dave")
    await ended_sessions(db, dave.id, 40)
    apps = [node.app for node in nodes]
    assert apps[0] is not None and apps[1] is not None
    purged = await asyncio.gather(purge_once(apps[0]), purge_once(apps[1]))
    assert sum(purged) == 40
    assert await one(db, "SELECT count(*) FROM sessions WHERE ended_at IS NOT NULL") == 0


async def test_the_purge_skips_a_row_another_unit_of_work_holds_instead_of_waiting(
    nodes: Nodes,
) -> None:
    a, b = database(nodes[0]), database(nodes[1])
    erin = await make_user(a, "erin")
    held, *others = await ended_sessions(a, erin.id, 5)
    assert nodes[1].app is not None
    async with a.transaction() as conn:
        await conn.fetch_one("SELECT id FROM sessions WHERE id = :id FOR UPDATE", {"id": held})
        assert await asyncio.wait_for(purge_once(nodes[1].app), 5) == len(others)
    assert await purge_once(nodes[1].app) == 1  # released: the next run takes it
    assert await one(b, "SELECT count(*) FROM sessions WHERE ended_at IS NOT NULL") == 0


# --- collisions: 503 with Retry-After, nothing applied -------------------------------------


async def lock_waiters(db: Database) -> int:
    sql = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return int(await one(db, sql))


async def test_a_deadlock_is_a_503_with_retry_after_and_nothing_applied(nodes: Nodes) -> None:
    """A deactivation (user row, then his sessions) against another node's unit of work
    that holds his sessions and then wants his row: the deactivation is the victim."""
    a, b = database(nodes[0]), database(nodes[1])
    root = await make_user(a, "root", is_superuser=True)
    frank = await make_user(a, "frank")
    headers = await auth(a, root.id)
    async with b.transaction() as other:
        sessions_of = "SELECT id FROM sessions WHERE user_id = :id FOR UPDATE"
        await other.fetch_all(sessions_of, {"id": frank.id})
        deactivating = asyncio.create_task(
            nodes[0].patch(f"/users/{frank.id}", json={"is_active": False}, headers=headers)
        )
        while await lock_waiters(a) == 0:  # the deactivation waits for his sessions
            await asyncio.sleep(0.02)
        await other.fetch_one("SELECT id FROM users WHERE id = :id FOR UPDATE", {"id": frank.id})
        response = await asyncio.wait_for(deactivating, 10)
    await problem(response, 503)
    assert response.headers["Retry-After"] == "5"
    assert await one(a, "SELECT is_active FROM users WHERE id = :id", {"id": frank.id}) is True
    open_sql = "SELECT count(*) FROM sessions WHERE user_id = :id AND ended_at IS NULL"
    assert await one(a, open_sql, {"id": frank.id}) == 1


async def test_a_lock_held_too_long_is_a_503_with_retry_after_and_nothing_applied(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setattr(postgres, "LOCK_TIMEOUT", "200ms")
    created = await nodes[0].post("/products/", json={"name": "Tea", "price": 4})
    path, product_id = created.headers["Location"], (await created.json())["id"]
    async with database(nodes[1]).transaction() as other:  # a stalled node holds the row
        await other.fetch_one(
            "SELECT id FROM products WHERE id = :id FOR UPDATE", {"id": product_id}
        )
        response = await nodes[0].patch(path, json={"price": 5})
    await problem(response, 503)
    assert response.headers["Retry-After"] == "5"
    assert (await (await nodes[0].get(path)).json())["price"] == 4
    samples = await scrape(nodes[0])
    assert value(samples, "database_units_of_work_total", outcome="conflict") == 1
    assert value(samples, "database_units_of_work_total", outcome="unavailable") == 0
    conflicts = [line for line in log_lines(settings) if "Write conflict" in line]
    # (Each app adds its own sink to the one log file: a line may be there twice.)
    assert conflicts and all("LockNotAvailableError" in line for line in conflicts), conflicts


async def test_one_reset_link_spent_on_both_nodes_at_once_sets_one_password(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = database(nodes[0])
    gina = await make_user(db, "gina", email="gina@example.com")
    link = "a-reset-token-of-gina-0123456789abcdefghijklmnop"
    async with db.transaction() as conn:
        await account_tokens.create(
            conn,
            token_hash=mailing.token_hash(link),
            purpose=Kind.RESET_PASSWORD.value,
            user_id=gina.id,
            token_version=gina.token_version,
            email=None,
            now=time.time(),
            expires_at=time.time() + 600,
        )
    meet_before(monkeypatch, account_tokens, "delete")
    passwords = ("first new password", "second new password")
    replies = await asyncio.gather(
        *(
            node.post("/reset-password", json={"token": link, "new_password": password})
            for node, password in zip(nodes, passwords, strict=True)
        )
    )
    assert sorted(reply.status for reply in replies) == [204, 400]
    won = passwords[[reply.status for reply in replies].index(204)]
    lost = passwords[1 - passwords.index(won)]
    assert (await login(nodes[1], "gina", won)).status == 200
    assert (await login(nodes[1], "gina", lost)).status == 401


async def test_one_mfa_token_spent_on_both_nodes_at_once_opens_one_session(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two valid codes (two recovery codes) with one mfa_token: one session, one code spent."""
    db = database(nodes[0])
    hana = await make_user(db, "hana")
    _, codes = await enable(nodes[0], await auth(db, hana.id), Clock())
    token = await mfa_token(nodes[0], "hana")
    sql = "SELECT count(*) FROM sessions WHERE user_id = :id AND ended_at IS NULL"
    before = await one(db, sql, {"id": hana.id})
    meet_before(monkeypatch, mfa_challenges, "spend")
    replies = await asyncio.gather(
        *(second_step(node, token, typed) for node, typed in zip(nodes, codes, strict=False))
    )
    assert sorted(reply.status for reply in replies) == [200, 401]
    for reply in replies:
        if reply.status == 200:
            remember((await reply.json())["refresh_token"], "a refresh token")
    assert await one(db, sql, {"id": hana.id}) == before + 1
    # The loser's code was not spent: its unit of work rolled back whole.
    recovery = "SELECT count(*) FROM totp_recovery_codes WHERE user_id = :id"
    assert await one(db, recovery, {"id": hana.id}) == len(codes) - 1


async def test_new_recovery_codes_racing_a_disable_on_both_nodes_leave_none(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TOTP turned off never leaves live recovery codes, whichever of the two goes first.

    Both lock the user's row before spending their code: the second waits for the first,
    and a replacement committed first dies with the disable, or a disable committed first
    leaves the replacement's code spent for nothing (400).
    """
    db = database(nodes[0])
    ivan = await make_user(db, "ivan")
    headers = await auth(db, ivan.id)
    clock = Clock()
    secret, codes = await enable(nodes[0], headers, clock)
    meet_before(monkeypatch, totp_accounts, "spend_code")
    disable = {"password": PASSWORD, "code": code(secret, clock, 1)}
    replies = await asyncio.gather(
        nodes[0].post("/users/me/totp/recovery-codes", json={"code": codes[0]}, headers=headers),
        nodes[1].delete("/users/me/totp", json=disable, headers=headers),
    )
    replaced, disabled = (reply.status for reply in replies)
    assert disabled == 204, await replies[1].text()
    assert replaced in (200, 400), await replies[0].text()
    if replaced == 200:
        for typed in (await replies[0].json())["recovery_codes"]:
            remember(typed, "a recovery code")
    params = {"id": ivan.id}
    assert await one(db, "SELECT totp_enabled FROM users WHERE id = :id", params) is False
    for table in ("totp_secrets", "totp_recovery_codes"):
        assert await one(db, f"SELECT count(*) FROM {table} WHERE user_id = :id", params) == 0
