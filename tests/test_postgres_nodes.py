"""Several app nodes on one PostgreSQL database: migrations once, shared state everywhere.

Each test starts real `run.py` processes on different ports against one database, as an
operator would behind a load balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.db import migrations
from service.db.dialect import Dialect
from tests import engines
from tests.helpers_process import (
    REPO_ROOT,
    Reply,
    Req,
    Server,
    _parallel,
    bearer,
    call,
    call_json,
    database_of,
    login,
    login_token,
    started,
    wait_until_ready,
)

pytestmark = [pytest.mark.postgresql_only, pytest.mark.process]

PASSWORD = "two-nodes-password"
SQLITE_DIR = REPO_ROOT / "sql" / "sqlite"


@contextlib.contextmanager
def two_nodes(tmp_path: Path, **env: str) -> Iterator[tuple[Server, Server]]:
    """Two run.py processes started at once on one fresh database, each with its own log."""
    with (
        started(tmp_path, LOG_FILE=str(tmp_path / "logs" / "a.log"), **env) as a,
        started(tmp_path, LOG_FILE=str(tmp_path / "logs" / "b.log"), **env) as b,
    ):
        wait_until_ready(a)
        wait_until_ready(b)
        yield a, b


def signup(server: Server, username: str) -> int:
    status, _, _ = call(
        server, "POST", "/users/signup", {"username": username, "password": PASSWORD}
    )
    return status


def test_nodes_starting_together_apply_each_migration_once(tmp_path: Path) -> None:
    with two_nodes(tmp_path) as (a, b):
        applied = engines.rows(
            str(a.database), "SELECT migration_id FROM _yoyo_log WHERE operation = 'apply'"
        )
        assert sorted(row[0] for row in applied) == sorted(
            migrations.known_migration_ids(Dialect.POSTGRESQL)
        )
        assert "Traceback" not in a.stderr() + b.stderr()


def test_concurrent_migrators_take_turns(tmp_path: Path) -> None:
    """Four migrators at once: together they apply each migration exactly once."""
    url = str(database_of(tmp_path))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: migrations.apply_pending(url), range(4)))
    applied = [migration_id for result in results for migration_id in result]
    assert sorted(applied) == sorted(migrations.known_migration_ids(Dialect.POSTGRESQL))
    assert migrations.pending_sync(url, migrations.known_migration_ids(Dialect.POSTGRESQL)) == []


def test_a_user_made_on_one_node_logs_in_on_the_other_and_revocation_is_shared(
    tmp_path: Path,
) -> None:
    with two_nodes(tmp_path) as (a, b):
        assert signup(a, "alice") == 201
        token = login_token(b, "alice", PASSWORD)
        status, _, body = call(a, "GET", "/users/me", headers=bearer(token))
        assert status == 200, body
        # Logging out on one node ends the session for every node.
        status, _, body = call(b, "POST", "/logout", headers=bearer(token))
        assert status == 204, body
        for node in (a, b):
            status, _, _ = call(node, "GET", "/users/me", headers=bearer(token))
            assert status == 401
        # A password change on one node refuses the older tokens on the other.
        old = login_token(a, "alice", PASSWORD)
        newer = login_token(a, "alice", PASSWORD)
        status, _, body = call(
            b,
            "PATCH",
            "/users/me/password",
            {"current_password": PASSWORD, "new_password": "a-new-password-1"},
            headers=bearer(newer),
        )
        assert status == 204, body
        status, _, _ = call(a, "GET", "/users/me", headers=bearer(old))
        assert status == 401


def test_twenty_signups_of_one_name_across_both_nodes_give_one_201(tmp_path: Path) -> None:
    with two_nodes(tmp_path) as (a, b):
        body = {"username": "racer", "password": PASSWORD}
        replies = asyncio.run(_both(a, b, [Req("POST", "/users/signup", json=body)] * 20))
        statuses = sorted(reply.status for reply in replies)
        assert statuses == [201] + [409] * 19, statuses
        assert engines.rows(str(a.database), "SELECT count(*) FROM users") == [(1,)]
        assert login(b, "racer", PASSWORD)[0] == 200


def test_login_throttling_counts_failures_on_every_node(tmp_path: Path) -> None:
    with two_nodes(tmp_path, LOGIN_MAX_FAILURES="3") as (a, b):
        assert signup(a, "bob") == 201
        assert [login(node, "bob", "wrong-password")[0] for node in (a, b, a)] == [401] * 3
        status, headers, _ = login(b, "bob", PASSWORD)  # the right password, too late
        assert status == 429 and int(headers["Retry-After"]) > 0


def test_etags_and_ids_agree_across_nodes(tmp_path: Path) -> None:
    with two_nodes(tmp_path) as (a, b):
        first = call_json(a, "POST", "/products/", {"name": "Tea", "price": 4.5})
        path = f"/products/{first['id']}"
        status, headers, _ = call(b, "GET", path)
        assert status == 200
        if_match = {"If-Match": headers["ETag"]}
        change = {"name": "Green tea", "price": 5, "in_stock": True}
        status, _, _ = call(a, "PUT", path, change, headers=if_match)
        assert status == 200
        status, _, _ = call(b, "PUT", path, change, headers=if_match)
        assert status == 412  # node B sees the version node A wrote
        status, _, _ = call(b, "DELETE", path)
        assert status == 204
        second = call_json(b, "POST", "/products/", {"name": "Coffee", "price": 3})
        third = call_json(a, "POST", "/products/", {"name": "Cocoa", "price": 2})
        assert first["id"] < second["id"] < third["id"]  # a deleted id is never given again


def test_sqlite_migrations_given_to_postgresql_fail_and_change_nothing(tmp_path: Path) -> None:
    url = str(database_of(tmp_path))
    yoyo = Path(sys.executable).parent / "yoyo"
    result = subprocess.run(
        [str(yoyo), "apply", "--batch", "--database", url, str(SQLITE_DIR)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    user_tables = engines.rows(
        url,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
        "AND position('yoyo' in table_name) = 0",
    )
    assert user_tables == []


async def _both(a: Server, b: Server, requests: list[Req]) -> list[Reply]:
    """Half the requests to each node, all at once."""
    halves = await asyncio.gather(
        _parallel(a.base, requests[::2]), _parallel(b.base, requests[1::2])
    )
    return [reply for half in halves for reply in half]


def test_a_lock_row_left_by_a_crashed_migrator_does_not_block_the_next_start(
    tmp_path: Path,
) -> None:
    url = str(database_of(tmp_path))
    migrations.apply_pending(url)
    engines.rows(url, "INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, now(), 999999)")
    # yoyo would wait for the lock, then refuse: "Process 999999 has locked this database".
    assert migrations.apply_pending(url) == []
    assert engines.rows(url, "SELECT count(*) FROM yoyo_lock") == [(0,)]


def test_usernames_fold_ascii_only_whatever_the_database_locale(tmp_path: Path) -> None:
    """Under a Turkish locale lower('ADMIN') is 'admın': the index and the match use "C"."""
    database = f"svc_turkish_{os.getpid()}"
    with engines.admin_connection() as conn, conn.cursor() as cursor:
        cursor.execute(
            f"CREATE DATABASE {database} TEMPLATE template0 "
            "LOCALE_PROVIDER icu ICU_LOCALE 'tr-TR' LOCALE 'C.UTF-8'"
        )
    try:
        url = engines.url_of(database)
        with started(tmp_path, DATABASE_URL=url) as node:
            wait_until_ready(node)
            assert signup(node, "admin") == 201
            assert signup(node, "ADMIN") == 409
            assert login(node, "ADMIN", PASSWORD)[0] == 200
    finally:
        with engines.admin_connection() as conn, conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def test_a_url_option_only_libpq_knows_stops_the_start_with_one_line(tmp_path: Path) -> None:
    """Migrations (libpq) accept keepalives_idle; asyncpg sends it to the server as a setting."""
    url = f"{database_of(tmp_path)}?keepalives_idle=30"
    with started(tmp_path, DATABASE_URL=url) as node:
        assert node.process.wait(timeout=30) == 1
    assert "error: the database:" in node.stderr() and "Traceback" not in node.stderr()
