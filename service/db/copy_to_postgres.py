"""`python run.py copy-to-postgres --from products.db --to postgresql://...`: move the data.

Copies every table of a SQLite database into an empty PostgreSQL database that has every
migration applied, in one transaction: all of it arrives, or nothing does. Each identity
sequence is set past the highest id SQLite ever gave (`sqlite_sequence` remembers deleted
rows' ids too), so that no id is given twice across the move. It refuses, changing
nothing, while either side has pending migrations or any target table holds a row.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from service.db import migrations
from service.db.dialect import Dialect
from service.db.postgres import CONNECT_TIMEOUT_SECONDS, WRITE_LOCK_KEY
from service.settings import redacted_url

EXIT_OK = 0
EXIT_REFUSED = 1
BATCH_ROWS = 1000  # rows read from SQLite and sent to PostgreSQL at a time


class Refused(Exception):
    """The copy cannot start, or failed and was rolled back: nothing was changed."""


@dataclass(frozen=True)
class Table:
    """A table to copy: its columns, those SQLite stores as 0/1, whether `id` is an identity."""

    name: str
    columns: tuple[str, ...]
    booleans: frozenset[str] = frozenset()
    identity: bool = False

    @property
    def select_sql(self) -> str:
        return f"SELECT {', '.join(self.columns)} FROM {self.name}"

    @property
    def insert_sql(self) -> str:
        # An identity column GENERATED ALWAYS takes a given id only when told to.
        overriding = " OVERRIDING SYSTEM VALUE" if self.identity else ""
        values = ", ".join(f"${number}" for number in range(1, len(self.columns) + 1))
        return f"INSERT INTO {self.name} ({', '.join(self.columns)}){overriding} VALUES ({values})"

    def to_postgres(self, row: Sequence[object]) -> tuple[object, ...]:
        """A SQLite row as asyncpg must send it: 0/1 as BOOLEAN."""
        return tuple(
            bool(value) if column in self.booleans else value
            for column, value in zip(self.columns, row, strict=True)
        )


# Every table the migrations create, parents before the rows that refer to them.
TABLES = (
    Table(
        "users",
        (
            *("id", "username", "email", "full_name", "hashed_password", "is_active"),
            *("is_superuser", "token_version", "created_at", "updated_at", "email_verified"),
            "totp_enabled",
        ),
        booleans=frozenset({"is_active", "is_superuser", "email_verified", "totp_enabled"}),
        identity=True,
    ),
    Table(
        "products",
        (
            *("id", "name", "name_folded", "price_cents", "in_stock", "description"),
            *("created_at", "updated_at", "version"),
        ),
        booleans=frozenset({"in_stock"}),
        identity=True,
    ),
    Table("login_failures", ("username", "client", "failures", "window_started_at")),
    Table(
        "login_account_failures",
        ("username", "failures", "window_started_at", "last_failure_at"),
    ),
    Table(
        "sessions",
        (
            *("id", "user_id", "refresh_token_hash", "created_at", "last_used_at"),
            *("expires_at", "ended_at", "user_agent", "client"),
        ),
    ),
    Table("spent_refresh_tokens", ("token_hash", "session_id")),
    Table(
        "account_tokens",
        (
            *("token_hash", "purpose", "user_id", "token_version", "email"),
            *("created_at", "expires_at"),
        ),
    ),
    Table(
        "outbox",
        (
            *("id", "kind", "recipient", "subject", "body_text", "body_html", "status"),
            *("attempts", "next_attempt_at", "last_error", "created_at", "finished_at"),
        ),
        identity=True,
    ),
    Table(
        "totp_secrets",
        ("user_id", "ciphertext", "key_id", "enabled", "last_used_step", "created_at"),
        booleans=frozenset({"enabled"}),
    ),
    Table("totp_recovery_codes", ("user_id", "code_hash")),
    Table(
        "mfa_challenges",
        (
            *("token_hash", "user_id", "token_version", "password_fingerprint", "failures"),
            *("created_at", "expires_at"),
        ),
    ),
)


@dataclass(frozen=True)
class Copied:
    """What one table's copy did: the rows copied and, for an identity, the next id."""

    table: str
    rows: int
    next_id: int | None

    def __str__(self) -> str:
        rows = "1 row" if self.rows == 1 else f"{self.rows} rows"
        following = "" if self.next_id is None else f", next id {self.next_id}"
        return f"{self.table}: {rows} copied{following}"


def main(argv: list[str] | None = None) -> int:
    """Check both databases, copy, print a line per table; the exit code."""
    args = parser().parse_args(argv)
    source: Path = args.source
    url: str = args.target
    try:
        check_source(source)
        check_target(url)
        copied = asyncio.run(copy(source, url))
    except Refused as error:
        print(f"error: {_scrubbed(str(error), url)}", file=sys.stderr)
        return EXIT_REFUSED
    for each in copied:
        print(each)
    print(f"copied {source} into {redacted_url(url)} in one transaction")
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="run.py copy-to-postgres",
        description="Copy a SQLite database into an empty, migrated PostgreSQL database.",
    )
    result.add_argument("--from", dest="source", type=Path, required=True, help="the SQLite file")
    result.add_argument(
        "--to",
        dest="target",
        type=_postgres_url,
        required=True,
        help="postgresql://user[:password]@host[:port]/database",
    )
    return result


def check_source(path: Path) -> None:
    """Refuse a missing file, or one whose schema is not this version's."""
    if not path.is_file():
        raise Refused(f"{path}: no such SQLite database")
    try:
        waiting = migrations.pending_sync(path, migrations.known_migration_ids(Dialect.SQLITE))
    except sqlite3.Error as error:
        raise Refused(f"{path} cannot be read as a SQLite database: {error}") from error
    if waiting:
        raise Refused(
            f"{path} has pending migrations ({', '.join(waiting)}); migrate it first: "
            f"`yoyo apply --database sqlite:///{path} sql/sqlite` (from the repository root), "
            "or serve it once with `python run.py`"
        )


def check_target(url: str) -> None:
    """Refuse a PostgreSQL database that is unreachable or not fully migrated."""
    try:
        known = migrations.known_migration_ids(Dialect.POSTGRESQL)
        waiting = migrations.pending_sync(url, known)
    except migrations.MigrationError as error:
        raise Refused(f"cannot read the migrations of {error}") from error
    if waiting:
        raise Refused(
            f"{redacted_url(url)} has pending migrations ({', '.join(waiting)}); migrate "
            f"it first: `yoyo apply --database {redacted_url(url)} sql/postgresql` "
            "(from the repository root), or start `python run.py` on it once"
        )


async def copy(source: Path, url: str) -> list[Copied]:
    """Copy every table in one transaction, alone among units of work; return what each did."""
    try:
        with _reading(source) as sqlite:
            connection = await _connect(url)
            try:
                async with connection.transaction():
                    # The service's own write lock: no node's unit of work runs meanwhile.
                    await connection.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK_KEY)
                    await _refuse_unless_empty(connection, url)
                    return [await _copy_table(sqlite, connection, table) for table in TABLES]
            finally:
                await connection.close()
    except (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
        raise Refused(f"the copy failed and was rolled back: {error}") from error


@contextmanager
def _reading(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the file, in one read transaction (one consistent state)."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, isolation_level=None)) as connection:
        connection.execute("BEGIN")
        try:
            yield connection
        finally:
            connection.execute("ROLLBACK")


async def _connect(url: str) -> asyncpg.Connection:
    try:
        connection: asyncpg.Connection = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_SECONDS)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:  # OSError: timeouts
        raise Refused(f"cannot connect to {redacted_url(url)}: {error}") from error
    return connection


async def _refuse_unless_empty(connection: asyncpg.Connection, url: str) -> None:
    filled = [
        table.name
        for table in TABLES
        if await connection.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table.name})")
    ]
    if filled:
        raise Refused(
            f"{redacted_url(url)} already holds data (in {', '.join(filled)}); "
            "copy only into a newly created, migrated database"
        )


async def _copy_table(
    sqlite: sqlite3.Connection, connection: asyncpg.Connection, table: Table
) -> Copied:
    cursor = sqlite.execute(table.select_sql)
    copied = 0
    while batch := cursor.fetchmany(BATCH_ROWS):
        await connection.executemany(table.insert_sql, [table.to_postgres(row) for row in batch])
        copied += len(batch)
    cursor.close()
    next_id = await _continue_ids(sqlite, connection, table) if table.identity else None
    return Copied(table.name, copied, next_id)


# The last id the identity sequence of table $1 has given; 0 if it has given none.
LAST_IDENTITY = """
SELECT coalesce(max(last_value), 0) FROM pg_sequences
WHERE format('%I.%I', schemaname, sequencename) = pg_get_serial_sequence($1, 'id')
"""
# Record $2 as the last id given, so that the next one is $2 + 1.
SET_LAST_IDENTITY = "SELECT setval(pg_get_serial_sequence($1, 'id'), $2)"


async def _continue_ids(
    sqlite: sqlite3.Connection, connection: asyncpg.Connection, table: Table
) -> int:
    """Move the sequence past every id either side ever gave; return the next id."""
    last = max(
        _highest_id_ever(sqlite, table), await connection.fetchval(LAST_IDENTITY, table.name)
    )
    if last > 0:  # 0: no id given anywhere yet, and setval takes only 1 and up
        await connection.execute(SET_LAST_IDENTITY, table.name, last)
    return int(last) + 1


def _highest_id_ever(sqlite: sqlite3.Connection, table: Table) -> int:
    """AUTOINCREMENT keeps the highest id given in sqlite_sequence, deleted rows included."""
    given = sqlite.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table.name,))
    (present,) = sqlite.execute(f"SELECT coalesce(max(id), 0) FROM {table.name}").fetchone()
    row = given.fetchone()
    return max(int(row[0]) if row else 0, int(present))


def _postgres_url(raw: str) -> str:
    url = raw.strip()
    if url.startswith("postgres://"):  # the older spelling
        url = "postgresql://" + url.removeprefix("postgres://")
    if not url.startswith("postgresql://") or not urlsplit(url).path.strip("/"):
        # ArgumentTypeError: argparse shows this message, never the value (a password).
        raise argparse.ArgumentTypeError("expected postgresql://user[:password]@host/database")
    return url


def _scrubbed(message: str, url: str) -> str:
    """The message without the URL's password, wherever a driver may have echoed it."""
    password = urlsplit(url).password
    return message.replace(password, "***") if password else message


if __name__ == "__main__":
    sys.exit(main())
