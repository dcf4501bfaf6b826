"""What the query modules and routes see of a database, whichever engine it is.

Both engines, SQLite (`service.db.sqlite`, the default) and PostgreSQL
(`service.db.postgres`), give the same three ways in, with the same guarantees:

- `transaction()`: one unit of work, committed if the block succeeds, rolled back if it
  raises or is cancelled. Units of work never interleave: each engine runs one at a time
  (SQLite's single writer; on PostgreSQL a transaction-scoped advisory lock, held by one
  transaction on any node), so a check-then-write is never raced by another writer.
- `read()`: autocommit reads, never blocked by a unit of work in progress.
- `read(snapshot=True)`: every statement in the block sees one consistent state.

Statements use `:name` placeholders; each adapter turns driver errors into the exceptions
below, so that no query module knows which driver runs it. The engines import this module,
and it imports neither of them: `service.db.opening` picks one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from service.db.dialect import Dialect

Params = Mapping[str, object]


class DatabaseError(Exception):
    """The database refused or failed a statement."""


class IntegrityError(DatabaseError):
    """A constraint refused the statement."""


class UniqueViolation(IntegrityError):
    """A UNIQUE constraint or primary key refused a duplicate."""


class ForeignKeyViolation(IntegrityError):
    """A row refers to one that does not exist (or no longer does)."""


class InvalidValue(DatabaseError):
    """A value the database cannot store or compare: a NUL in text, an unencodable string."""


class UndefinedTable(DatabaseError):
    """The statement names a table the schema does not have (migrations not applied)."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot serve now (unreachable, connection broken, locked): retry later."""


class Row(Protocol):
    """A result row: by column name or by position (sqlite3.Row, asyncpg.Record)."""

    def __getitem__(self, key: str | int, /) -> Any: ...


class Connection(Protocol):
    """A connection lent for one unit of work or one read."""

    @property
    def dialect(self) -> Dialect: ...

    async def fetch_all(self, sql: str, params: Params | None = None) -> Sequence[Row]:
        """Every row the statement returns."""
        ...

    async def fetch_one(self, sql: str, params: Params | None = None) -> Row | None:
        """The first row the statement returns, or None."""
        ...

    async def execute(self, sql: str, params: Params | None = None) -> int:
        """Run an INSERT, UPDATE or DELETE; return how many rows it changed."""
        ...


class Database(Protocol):
    """The service's database handle; see the module's docstring for the guarantees."""

    @property
    def dialect(self) -> Dialect: ...

    def transaction(self) -> AbstractAsyncContextManager[Connection]: ...

    def read(self, *, snapshot: bool = False) -> AbstractAsyncContextManager[Connection]: ...

    async def close(self) -> None: ...


def returned(row: Row | None) -> Row:
    """The row that INSERT/UPDATE ... RETURNING of an existing row, or count(*), must give."""
    if row is None:
        raise LookupError("the statement returned no row")
    return row
