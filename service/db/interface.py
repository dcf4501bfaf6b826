"""What the query modules and routes see of a database, whichever engine it is.

Both engines, SQLite (`service.db.sqlite`, the default) and PostgreSQL
(`service.db.postgres`), give the same three ways in, with the same guarantees:

- `transaction()`: one unit of work, committed if the block succeeds, rolled back if it
  raises or is cancelled. SQLite runs them one at a time (its single writer); PostgreSQL
  runs them in parallel, on one node and across nodes, at READ COMMITTED. What keeps a
  check-then-write correct there is stated by the unit of work itself, in one of the
  forms below, and each is a no-op or plain SQL on SQLite.
- `read()`: autocommit reads, never blocked by a unit of work in progress.
- `read(snapshot=True)`: every statement in the block sees one consistent state.

How a rule holds on PostgreSQL without a global lock (every unit of work, by module):

1. An atomic statement, whose WHERE PostgreSQL re-checks on the row's newest version
   after waiting for a concurrent writer: spending a one-use token (`DELETE ... ` whose
   count says who won: reset links, verification links, TOTP recovery codes, a login's
   mfa_token), a TOTP code's step (`WHERE last_used_step < :step`), a conditional update (a
   session's rotation `WHERE refresh_token_hash = :old`, an outbox row's `WHERE attempts
   = :n`, a re-hash `WHERE hashed_password = :old`), an upsert (login failure counts),
   a UNIQUE index (one username, whoever inserts it first).
2. The row read `FOR UPDATE` (`dialect.for_update`) before deciding and writing it back:
   If-Match and the read-modify-write of a product, a user's update and deletion, the
   refresh token's session, the one verification link per interval, and every change of
   a user's TOTP state (enrollment, confirmation, new recovery codes, disable, reset):
   the user's row, locked before his secret, codes and mfa_tokens.
   A login (and its second step) reads its user `FOR SHARE`: a password change or
   deactivation in flight either ends the session the login opens, or is seen and refuses it.
3. A narrow advisory lock, `Connection.lock(name)`, for a rule over rows that may not
   exist yet or over a set: "the active superusers" (the last one is never demoted,
   deactivated or deleted) and one throttle key (a login's username, also in its second
   step; a user's current-password and TOTP code checks; a recovery address and client),
   so parallel attempts count one by one and none slips past the limit.
4. `FOR UPDATE SKIP LOCKED` where workers share a queue: the outbox's claims, and the
   purge's batches (two nodes purge disjoint rows, and skip a session being refreshed).

A unit of work that waits too long for a lock (LOCK_TIMEOUT in postgres.py) or is chosen
as a deadlock's victim is rolled back whole and raises WriteConflict, a
DatabaseUnavailable: 503 with Retry-After, never half-applied. There is no automatic
retry: the body of `async with` cannot be run again, and the locks above are taken in
one order (a throttle key, then a user's row, then the superusers' lock), so deadlocks
are rare.

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


class WriteConflict(DatabaseUnavailable):
    """Units of work collided (a deadlock, a lock awaited too long): this one rolled back."""


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

    async def lock(self, name: str) -> None:
        """Hold the lock `name` until the unit of work ends; others asking for it wait."""
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
