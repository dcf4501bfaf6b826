"""The database engines the suite runs on, and a PostgreSQL database of its own per test.

TEST_ENGINE picks one per run: `sqlite` (the default, what `make test` runs) or
`postgresql` (`make test-postgresql`); the fixtures hand every test the engine's database.
On PostgreSQL each test that needs a database gets a new one on the server named by
TEST_POSTGRES_URL, created from a template migrated once per session, and dropped after
the test (or, with `keep`, after the session: for module-scoped servers).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
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
        template = _migrated_template() if migrated else "template0"
        _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        (_kept if keep else _created).append(name)
    elif migrated:
        migrations.apply_pending(url_of(name))
    return url_of(name)


def migrate(url: str) -> None:
    """Migrate the test's database: a copy of the migrated template, cheaper than yoyo."""
    name = urlsplit(url).path.lstrip("/")
    if name not in _created:
        raise LookupError(f"{name} is not a database of this test")
    _admin(f'DROP DATABASE "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{_migrated_template()}"')


def drop_test_databases() -> None:
    """Drop the databases this test created (a server process still connected is cut)."""
    while _created:
        _admin(f'DROP DATABASE IF EXISTS "{_created.pop()}" WITH (FORCE)')


def drop_session_databases() -> None:
    """Drop the kept databases and the template, once the session is over."""
    global _template
    if _template is not None:
        _kept.append(_template)
        _template = None
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
