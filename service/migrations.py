"""Schema migrations: yoyo applies the numbered SQL files in sql/; readiness reads its table."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path

import aiosqlite
from yoyo import get_backend, read_migrations

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "sql"


def known_migration_ids(directory: Path = MIGRATIONS_DIR) -> frozenset[str]:
    """The ids yoyo gives the files in `directory` (file name without `.sql`)."""
    return frozenset(
        path.name.removesuffix(".sql")
        for path in directory.glob("*.sql")
        if not path.name.endswith(".rollback.sql")
    )


def apply_pending(database_path: Path, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every pending migration under yoyo's lock; return the ids applied."""
    database_path.parent.mkdir(parents=True, exist_ok=True)
    backend = get_backend(f"sqlite:///{database_path}")
    try:
        migrations = read_migrations(str(directory))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return [migration.id for migration in pending]
    finally:
        backend.connection.close()


def rollback_all(database_path: Path, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Roll back every applied migration, newest first; return the ids rolled back."""
    backend = get_backend(f"sqlite:///{database_path}")
    try:
        migrations = read_migrations(str(directory))
        with backend.lock():
            applied = backend.to_rollback(migrations)
            backend.rollback_migrations(applied)
        return [migration.id for migration in applied]
    finally:
        backend.connection.close()


def pending_sync(database_path: Path, known: frozenset[str]) -> list[str]:
    """The known migrations not yet applied to the file at `database_path`."""
    if not database_path.exists():
        return sorted(known)
    with closing(sqlite3.connect(database_path)) as connection:
        try:
            rows = connection.execute(_APPLIED).fetchall()
        except sqlite3.OperationalError:  # no _yoyo_migration table: nothing applied yet
            return sorted(known)
    return sorted(known - _applied(rows))


async def pending(connection: aiosqlite.Connection, known: frozenset[str]) -> list[str]:
    """The known migrations not yet applied, read without yoyo's blocking API."""
    try:
        rows = await connection.execute_fetchall(_APPLIED)
    except sqlite3.OperationalError:  # no _yoyo_migration table: nothing applied yet
        return sorted(known)
    return sorted(known - _applied(rows))


async def unready_reason(connection: aiosqlite.Connection, known: frozenset[str]) -> str | None:
    """Why the service cannot serve yet (database down, migrations pending), or None."""
    try:
        waiting = await pending(connection, known)
    except sqlite3.Error as error:
        return f"the database does not answer ({type(error).__name__})"
    return f"migrations pending: {', '.join(waiting)}" if waiting else None


_APPLIED = "SELECT migration_id FROM _yoyo_migration"


def _applied(rows: Iterable[tuple[str] | sqlite3.Row]) -> set[str]:
    return {str(row[0]) for row in rows}
