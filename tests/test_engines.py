"""The PostgreSQL half's recycled databases: a test must never see another test's rows.

tests/engines.py hands a migrated database to the next test by emptying and renaming it
instead of copying the template; these tests hold it to being the template's equal.
"""

from __future__ import annotations

from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest

from tests import engines

pytestmark = pytest.mark.postgresql_only

INSERT = (
    "INSERT INTO products (name, name_folded, price_cents, created_at, updated_at) "
    "VALUES ('Tea', 'tea', 450, 'now', 'now') RETURNING id"
)


def oid_of(url: str) -> int:
    name = url.rsplit("/", 1)[1]
    [(oid,)] = engines.rows(
        engines.ADMIN_URL, "SELECT oid FROM pg_database WHERE datname = ?", (name,)
    )
    return int(oid)


def test_a_recycled_database_comes_back_empty_with_its_identities_restarted(
    tmp_path: Path,
) -> None:
    first = engines.database_for(tmp_path / "first", migrated=True)
    assert engines.rows(first, INSERT) == [(1,)]
    engines.rows(first, INSERT)
    first_oid = oid_of(first)
    engines.drop_test_databases()

    second = engines.database_for(tmp_path / "second", migrated=True)
    assert oid_of(second) == first_oid  # the same database, renamed: it was recycled
    assert engines.rows(second, "SELECT count(*) FROM products") == [(0,)]
    assert engines.rows(second, INSERT) == [(1,)]  # no id is skipped either
    migrations = "SELECT count(*) FROM _yoyo_migration"
    template = engines.url_of(engines._migrated_template())
    assert engines.rows(second, migrations) == engines.rows(template, migrations)


def test_a_database_whose_schema_a_test_changed_is_dropped_not_recycled(tmp_path: Path) -> None:
    first = engines.database_for(tmp_path / "first", migrated=True)
    engines.rows(first, "ALTER TABLE products ADD COLUMN colour TEXT")
    first_oid = oid_of(first)
    engines.drop_test_databases()

    second = engines.database_for(tmp_path / "second", migrated=True)
    assert oid_of(second) != first_oid
    columns = "SELECT column_name FROM information_schema.columns WHERE table_name = 'products'"
    assert ("colour",) not in engines.rows(second, columns)


def test_a_database_a_process_still_holds_is_taken_from_it_and_recycled(tmp_path: Path) -> None:
    first = engines.database_for(tmp_path / "first", migrated=True)
    holder = psycopg2.connect(first)  # a server process the test left running, say
    try:
        first_oid = oid_of(first)
        engines.drop_test_databases()
        second = engines.database_for(tmp_path / "second", migrated=True)
        assert oid_of(second) == first_oid
        assert _is_cut(holder)
    finally:
        holder.close()


def _is_cut(connection: psycopg2.extensions.connection) -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except psycopg2.Error:
        return True
    return False
