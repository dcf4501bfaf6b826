"""Schema migrations: yoyo applies the numbered SQL files of the database's engine.

Each engine's DDL is its own: `sql/sqlite/` and `sql/postgresql/` hold files with the same
numbers and names, so a migration's id (the file name) means the same change on both.
On PostgreSQL, nodes starting at once take turns: a session-level advisory lock, which the
server releases if a node dies mid-migration, is held around yoyo's own lock (whose row a
dead migrator leaves behind: the lock's holder clears it). A hand-run `yoyo apply` does
not take the advisory lock: do not run one while nodes start.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import psycopg2
from yoyo import exceptions as yoyo_errors
from yoyo import get_backend, read_migrations

from service.db.dialect import Dialect
from service.db.interface import Connection, DatabaseError, UndefinedTable
from service.files import private_file
from service.settings import redacted_url

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
# pg_advisory_lock's key for "migrating"; distinct from the units of work's key.
MIGRATION_LOCK_KEY = 0x5E_ED_0002
MIGRATION_LOCK_TIMEOUT = "120s"  # a node waits this long for another node's migration


class MigrationError(Exception):
    """Migrations could not run: the database is unreachable or refused one, or is locked."""


def dialect_of(url: str) -> Dialect:
    """The engine a database URL names (postgresql://... or sqlite:///...)."""
    return Dialect.POSTGRESQL if url.startswith("postgresql://") else Dialect.SQLITE


def migrations_dir(dialect: Dialect) -> Path:
    """Where the engine's migration files are: sql/sqlite or sql/postgresql."""
    return SQL_DIR / dialect.value


def known_migration_ids(dialect: Dialect = Dialect.SQLITE) -> frozenset[str]:
    """The ids yoyo gives the engine's files (the file name without `.sql`)."""
    return frozenset(
        path.name.removesuffix(".sql")
        for path in migrations_dir(dialect).glob("*.sql")
        if not path.name.endswith(".rollback.sql")
    )


def apply_pending(database: str | Path) -> list[str]:
    """Apply every pending migration under yoyo's lock; return the ids applied.

    `database` is a URL (sqlite:///..., postgresql://...) or the path of a SQLite file.
    """
    url = _url(database)
    with _backend(url) as backend:
        migrations = read_migrations(str(migrations_dir(dialect_of(url))))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return [migration.id for migration in pending]


def rollback_all(database: str | Path) -> list[str]:
    """Roll back every applied migration, newest first; return the ids rolled back."""
    url = _url(database)
    with _backend(url) as backend:
        migrations = read_migrations(str(migrations_dir(dialect_of(url))))
        with backend.lock():
            applied = backend.to_rollback(migrations)
            backend.rollback_migrations(applied)
        return [migration.id for migration in applied]


def pending_sync(database: str | Path, known: frozenset[str]) -> list[str]:
    """The known migrations not yet applied to the database (creates nothing)."""
    url = _url(database)
    if dialect_of(url) is Dialect.POSTGRESQL:
        return _pending_on_postgres(url, known)
    database_path = Path(url.removeprefix("sqlite:///"))
    if not database_path.exists():
        return sorted(known)
    with closing(sqlite3.connect(database_path)) as connection:
        try:
            rows = connection.execute(_APPLIED).fetchall()
        except sqlite3.OperationalError:  # no _yoyo_migration table: nothing applied yet
            return sorted(known)
    return sorted(known - _applied(rows))


async def pending(connection: Connection, known: frozenset[str]) -> list[str]:
    """The known migrations not yet applied, read on the service's own connection."""
    try:
        rows = await connection.fetch_all(_APPLIED)
    except UndefinedTable:  # no _yoyo_migration table: nothing applied yet
        return sorted(known)
    return sorted(known - _applied(rows))


async def unready_reason(connection: Connection, known: frozenset[str]) -> str | None:
    """Why the service cannot serve yet (database down, migrations pending), or None."""
    try:
        waiting = await pending(connection, known)
    except DatabaseError as error:
        return f"the database does not answer ({type(error).__name__})"
    return f"migrations pending: {', '.join(waiting)}" if waiting else None


_APPLIED = "SELECT migration_id FROM _yoyo_migration"
# What yoyo's two drivers raise: psycopg2 for postgresql://, sqlite3 for sqlite:///.
_DRIVER_ERRORS = (psycopg2.Error, sqlite3.Error)


def _applied(rows: Iterable[Any]) -> set[str]:
    return {str(row[0]) for row in rows}


def _pending_on_postgres(url: str, known: frozenset[str]) -> list[str]:
    # Not through yoyo: get_backend() creates yoyo's tables in a database it only looks at.
    try:
        with closing(psycopg2.connect(url)) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('_yoyo_migration') IS NULL")
            if cursor.fetchone() == (True,):  # no table: nothing applied yet
                return sorted(known)
            cursor.execute(_APPLIED)
            return sorted(known - _applied(cursor.fetchall()))
    except psycopg2.Error as error:
        raise MigrationError(f"{redacted_url(url)}: {str(error).strip()}") from error


def _url(database: str | Path) -> str:
    return f"sqlite:///{database}" if isinstance(database, Path) else database


@contextmanager
def _backend(url: str, *, exclusive: bool = True) -> Iterator[Any]:
    """yoyo's backend for `url`; on PostgreSQL with `exclusive`, no other node migrates."""
    if url.startswith("sqlite:///"):
        private_file(Path(url.removeprefix("sqlite:///")))  # before SQLite creates it 0644
    try:
        backend = get_backend(url)
    except _DRIVER_ERRORS as error:
        raise MigrationError(f"cannot connect to {redacted_url(url)}: {error}") from error
    try:
        if exclusive and dialect_of(url) is Dialect.POSTGRESQL:
            # yoyo's connection is in autocommit mode: the lock is the session's until
            # unlocked or disconnected. lock_timeout bounds the wait for another node.
            backend.execute(f"SET lock_timeout = '{MIGRATION_LOCK_TIMEOUT}'")
            backend.execute(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
            backend.execute("SET lock_timeout = 0")
            # Holding it, no other node migrates: a yoyo lock row now is a crashed
            # migrator's, which would refuse every start until `yoyo break-lock`.
            backend.break_lock()
        yield backend
    except (*_DRIVER_ERRORS, yoyo_errors.LockTimeout) as error:
        raise MigrationError(f"{redacted_url(url)}: {str(error).strip()}") from error
    finally:
        backend.connection.close()  # closing the session releases the advisory lock
