"""Migrations: apply / roll back / re-apply, pending detection, readiness, the yoyo CLI."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiosqlite
import pytest
from aiohttp.test_utils import TestClient
from yoyo import get_backend, read_migrations

from service.app import create_app
from service.db import migrations
from service.db.dialect import Dialect
from service.db.sqlite import SqliteConnection
from service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
YOYO = Path(sys.executable).parent / "yoyo"


def schema(path: Path) -> set[tuple[str, str]]:
    """The (type, name) of every schema object but yoyo's own bookkeeping and SQLite's."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
    return {
        (kind, name) for kind, name in rows if not name.startswith(("_yoyo", "yoyo_", "sqlite_"))
    }


def ordered_migrations() -> list[str]:
    return sorted(migrations.known_migration_ids())


@pytest.mark.parametrize("dialect", list(Dialect))
def test_known_migration_ids_are_the_sql_files(dialect: Dialect) -> None:
    sql = REPO_ROOT / "sql" / dialect.value
    forward = {p.name[: -len(".sql")] for p in sql.glob("*.sql") if ".rollback." not in p.name}
    assert forward
    assert migrations.known_migration_ids(dialect) == forward
    for migration_id in forward:  # every migration can be rolled back
        assert (sql / f"{migration_id}.rollback.sql").is_file()


def test_both_engines_have_the_same_numbered_migrations() -> None:
    """One numbering: a migration id names the same change on either engine."""
    sqlite, postgresql = (set((REPO_ROOT / "sql" / d.value).glob("*.sql")) for d in Dialect)
    assert {p.name for p in sqlite} == {p.name for p in postgresql}
    assert not list((REPO_ROOT / "sql").glob("*.sql"))  # none left outside an engine's folder


def test_apply_creates_the_products_table(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    assert migrations.apply_pending(path) == ordered_migrations()
    objects = schema(path)
    assert ("table", "products") in objects
    assert {"products_by_name", "products_by_price"} <= {n for k, n in objects if k == "index"}
    assert migrations.apply_pending(path) == []  # idempotent: nothing left to apply


def test_every_migration_applies_rolls_back_and_reapplies(tmp_path: Path) -> None:
    """Step through the migrations one by one, then back, then forward again."""
    path = tmp_path / "db.sqlite"
    sources = read_migrations(str(migrations.migrations_dir(Dialect.SQLITE)))
    backend = get_backend(f"sqlite:///{path}")
    try:
        states = [schema(path)]  # empty before anything
        for migration in sources:
            with backend.lock():
                backend.apply_migrations(
                    backend.to_apply(sources.filter(lambda m, i=migration.id: m.id == i))
                )
            states.append(schema(path))
            assert states[-1] != states[-2], f"{migration.id} changed nothing"
        for index, migration in reversed(list(enumerate(sources))):
            with backend.lock():
                backend.rollback_migrations(
                    backend.to_rollback(sources.filter(lambda m, i=migration.id: m.id == i))
                )
            assert schema(path) == states[index], f"rollback of {migration.id} left objects"
    finally:
        backend.connection.close()
    assert schema(path) == set()
    assert ("table", "products") not in schema(path)
    assert migrations.pending_sync(path, migrations.known_migration_ids()) == ordered_migrations()

    assert migrations.apply_pending(path) == ordered_migrations()
    assert schema(path) == states[-1]


def test_rollback_all_then_reapply(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    migrations.apply_pending(path)
    applied = schema(path)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "INSERT INTO products (name, name_folded, price_cents, created_at, updated_at)"
            " VALUES ('Tea', 'tea', 450, 'x', 'x')"
        )
    assert migrations.rollback_all(path) == list(reversed(ordered_migrations()))
    assert schema(path) == set()
    assert migrations.rollback_all(path) == []
    assert migrations.apply_pending(path) == ordered_migrations()
    assert schema(path) == applied
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM products").fetchone() == (0,)


def test_pending_sync(tmp_path: Path) -> None:
    known = migrations.known_migration_ids()
    path = tmp_path / "db.sqlite"
    assert migrations.pending_sync(path, known) == ordered_migrations()  # no file yet
    assert not path.exists()  # checking does not create the database
    sqlite3.connect(path).close()
    assert migrations.pending_sync(path, known) == ordered_migrations()  # empty file
    migrations.apply_pending(path)
    assert migrations.pending_sync(path, known) == []
    assert migrations.pending_sync(path, known | {"9999.future"}) == ["9999.future"]


async def test_pending_async(tmp_path: Path) -> None:
    known = migrations.known_migration_ids()
    path = tmp_path / "db.sqlite"
    async with aiosqlite.connect(path) as raw:
        conn = SqliteConnection(raw)
        assert await migrations.pending(conn, known) == ordered_migrations()
        assert await migrations.unready_reason(conn, known) is not None
    migrations.apply_pending(path)
    async with aiosqlite.connect(path) as raw:
        conn = SqliteConnection(raw)
        assert await migrations.pending(conn, known) == []
        assert await migrations.unready_reason(conn, known) is None
        assert await migrations.pending(conn, known | {"9999.future"}) == ["9999.future"]
        reason = await migrations.unready_reason(conn, known | {"9999.future"})
        assert reason is not None and "9999.future" in reason


async def test_health_and_readiness_on_an_unmigrated_database(
    aiohttp_client, settings: Settings
) -> None:
    client: TestClient = await aiohttp_client(create_app(settings))  # type: ignore[type-arg]

    live = await client.get("/health")
    assert live.status == 200
    assert await live.json() == {"status": "ok"}

    ready = await client.get("/health/ready")
    assert ready.status == 503
    assert ready.content_type == "application/problem+json"
    body = await ready.json()
    assert body["status"] == 503
    assert body["title"] == "Service Unavailable"
    assert isinstance(body["detail"], str) and body["detail"]
    assert "Traceback" not in body["detail"] and "SELECT" not in body["detail"]

    migrations.apply_pending(settings.database_url)  # while the app keeps running

    ready = await client.get("/health/ready")
    assert ready.status == 200
    assert ready.content_type == "application/json"
    assert (await ready.json())["status"] == "ready"


async def test_health_on_a_migrated_database(client: TestClient) -> None:  # type: ignore[type-arg]
    live = await client.get("/health")
    assert live.status == 200
    assert live.content_type == "application/json"
    assert await live.json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status == 200


def test_yoyo_apply_from_the_repository_root(tmp_path: Path) -> None:
    path = tmp_path / "cli.db"
    default_db = REPO_ROOT / "products.db"
    default_existed = default_db.exists()
    result = subprocess.run(
        [str(YOYO), "apply", "--database", f"sqlite:///{path}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert ("table", "products") in schema(path)
    assert migrations.pending_sync(path, migrations.known_migration_ids()) == []
    assert default_db.exists() == default_existed  # the given database, not the default
    # and the service's own code agrees there is nothing left to do
    assert migrations.apply_pending(path) == []
