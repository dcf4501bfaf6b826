"""The database engines the suite runs on, and a PostgreSQL database of its own per test.

TEST_ENGINE picks one per run: `sqlite` (the default, what `make test` runs) or
`postgresql` (`make test-postgresql`); the fixtures hand every test the engine's database.
On PostgreSQL each test that needs a database gets one of its own on the server named by
TEST_POSTGRES_URL, dropped after the test (or, with `keep`, after the session: for
module-scoped servers). A migrated one is recycled instead: emptied, checked to have the
template's schema, and renamed for the next test. Copying the template cost ~0.3 s a
test, more than most tests themselves; emptying and renaming costs a few milliseconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions
import pytest

from service.db import migrations
from service.db.dialect import Dialect
from service.settings import redacted_url

ENGINE = Dialect(os.environ.get("TEST_ENGINE", "sqlite").strip() or "sqlite")
ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_PREFIX = f"svc_test_{os.getpid()}_"

_created: list[str] = []
_kept: list[str] = []
_template: str | None = None
_recyclable: set[str] = set()  # the test's databases handed out migrated
_spares: list[str] = []  # emptied migrated databases, for the next tests to take
_spare_names = itertools.count()
_YOYO_TABLES = ("_yoyo_log", "_yoyo_migration", "_yoyo_version", "yoyo_lock")


def url_of(name: str) -> str:
    """The URL of database `name` on the test server."""
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))


def server_problem() -> str | None:
    """Why the PostgreSQL test server cannot be used, or None when it answers."""
    try:
        psycopg2.connect(ADMIN_URL, connect_timeout=3).close()
    except psycopg2.Error as error:
        return f"{redacted_url(ADMIN_URL)}: {str(error).strip().splitlines()[0]}"
    return None


def is_postgres() -> bool:
    return ENGINE is Dialect.POSTGRESQL


def database_for(tmp_path: Path, *, migrated: bool = False, keep: bool = False) -> str:
    """The URL of the PostgreSQL database of `tmp_path`'s test, created at the first call."""
    name = _PREFIX + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]
    if name not in _created and name not in _kept:
        if migrated and not keep:
            _take_migrated(name)
        else:
            template = _migrated_template() if migrated else "template0"
            _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        (_kept if keep else _created).append(name)
    elif migrated:
        migrations.apply_pending(url_of(name))
    return url_of(name)


def migrate(url: str) -> None:
    """Migrate the test's database: a migrated copy, cheaper than yoyo."""
    name = urlsplit(url).path.lstrip("/")
    if name not in _created:
        raise LookupError(f"{name} is not a database of this test")
    if name in _recyclable:
        return  # handed out migrated
    _admin(f'DROP DATABASE "{name}" WITH (FORCE)')
    _take_migrated(name)


def drop_test_databases() -> None:
    """Recycle or drop the databases this test created (server processes still connected
    are cut)."""
    while _created:
        name = _created.pop()
        if name in _recyclable:
            _recyclable.discard(name)
            if _recycle(name):
                continue
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _take_migrated(name: str) -> None:
    """Create database `name` migrated: a spare renamed, else a copy of the template."""
    if _spares:
        _admin(f'ALTER DATABASE "{_spares.pop()}" RENAME TO "{name}"')
    else:
        _admin(f'CREATE DATABASE "{name}" TEMPLATE "{_migrated_template()}"')
    _recyclable.add(name)


def _recycle(name: str) -> bool:
    """Empty a test's migrated database into a spare; False if it cannot be trusted to be
    the template's equal (its schema changed) or cannot be taken over (still in use)."""
    try:
        _disconnect_everyone_from(name)
        with contextlib.closing(psycopg2.connect(url_of(name))) as conn, conn, conn.cursor() as cur:
            if _schema_of(cur) != _template_schema():
                return False
            cur.execute(_TABLES_SQL, (list(_YOYO_TABLES),))
            (tables,) = cur.fetchone()
            cur.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        spare = f"{_PREFIX}spare_{next(_spare_names)}"
        _admin(f'ALTER DATABASE "{name}" RENAME TO "{spare}"')
    except psycopg2.Error:
        return False  # a server process that reconnected, say: the caller drops it
    _spares.append(spare)
    return True


def _disconnect_everyone_from(name: str) -> None:
    """End every other session on `name`, and wait until they are gone."""
    with admin_connection() as conn, conn.cursor() as cursor:
        for _ in range(100):
            cursor.execute(_TERMINATE_SQL, (name,))
            if not cursor.fetchall():
                return
            time.sleep(0.01)


_template_schema_cache: list[tuple[Any, ...]] = []


def _template_schema() -> list[tuple[Any, ...]]:
    if not _template_schema_cache:
        url = url_of(_migrated_template())
        with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cursor:
            _template_schema_cache.extend(_schema_of(cursor))
    return _template_schema_cache


def _schema_of(cursor: psycopg2.extensions.cursor) -> list[tuple[Any, ...]]:
    """What a test could have changed beyond the rows: objects, definitions, migrations."""
    cursor.execute(_SCHEMA_SQL)
    return list(cursor.fetchall())


_TABLES_SQL = """
    SELECT string_agg(format('%%I', tablename), ', ') FROM pg_tables
    WHERE schemaname = 'public' AND tablename <> ALL(%s)
"""
_TERMINATE_SQL = """
    SELECT pg_terminate_backend(pid) FROM pg_stat_activity
    WHERE datname = %s AND pid <> pg_backend_pid()
"""
_SCHEMA_SQL = """
    SELECT c.relkind::text, c.relname, n.nspname, coalesce(pg_get_indexdef(c.oid), ''),
           (SELECT string_agg(concat_ws(' ', a.attname, format_type(a.atttypid, a.atttypmod),
                                        a.attnotnull, pg_get_expr(d.adbin, d.adrelid)),
                              ', ' ORDER BY a.attnum)
              FROM pg_attribute a
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
    UNION ALL
    SELECT 'constraint', conname, conrelid::regclass::text, pg_get_constraintdef(oid), ''
      FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'routine', proname, pronamespace::regnamespace::text, '', '' FROM pg_proc
     WHERE pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
    UNION ALL
    SELECT 'trigger', tgname, tgrelid::regclass::text, '', '' FROM pg_trigger
     WHERE NOT tgisinternal
    UNION ALL
    SELECT 'migration', migration_hash, migration_id, '', '' FROM _yoyo_migration
    UNION ALL
    SELECT 'yoyo log', count(*)::text, '', '', '' FROM _yoyo_log
    UNION ALL
    SELECT 'database setting', array_to_string(setconfig, ','), '', '', ''
      FROM pg_db_role_setting
     WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
    ORDER BY 1, 2, 3, 4, 5
"""


def drop_session_databases() -> None:
    """Drop the kept databases and the template, once the session is over."""
    global _template
    if _template is not None:
        _kept.append(_template)
        _template = None
    _kept.extend(_spares)
    _spares.clear()
    while _kept:
        _admin(f'DROP DATABASE IF EXISTS "{_kept.pop()}" WITH (FORCE)')


def rows(url: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows straight from a PostgreSQL database; `?` placeholders, as for sqlite3."""
    # `with conn` commits: a write is seen as another process's would be.
    with contextlib.closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cursor:
        cursor.execute(sql.replace("?", "%s"), params)
        return list(cursor.fetchall()) if cursor.description else []


def _migrated_template() -> str:
    global _template
    if _template is None:
        name = _PREFIX + "template"
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
        migrations.apply_pending(url_of(name))
        _template = name
    return _template


def _admin(statement: str) -> None:
    with admin_connection() as conn, conn.cursor() as cursor:
        cursor.execute(statement)


@contextlib.contextmanager
def admin_connection() -> Iterator[psycopg2.extensions.connection]:
    conn = psycopg2.connect(ADMIN_URL)
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    try:
        yield conn
    finally:
        conn.close()


_own = itertools.count()


@contextlib.contextmanager
def own_database(*, migrated: bool = False) -> Iterator[str]:
    """A new database on the test server, whatever TEST_ENGINE is, dropped on the way out.

    For tests that need PostgreSQL in the SQLite session too (copying from one engine to
    the other); an unreachable server fails them with the reason, it does not skip them.
    """
    name = f"{_PREFIX}own_{next(_own)}"
    try:
        _admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
    except psycopg2.OperationalError as error:
        pytest.fail(
            f"this test needs the PostgreSQL server at {redacted_url(ADMIN_URL)} "
            f"(TEST_POSTGRES_URL): {error}"
        )
    try:
        if migrated:
            migrations.apply_pending(url_of(name))
        yield url_of(name)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
