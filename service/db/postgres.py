"""PostgreSQL through asyncpg connection pools, with the guarantees of service.db.interface.

Units of work run in parallel, on one node and across nodes, at READ COMMITTED; the rules
that span rows hold through row locks, atomic statements and narrow advisory locks, as
the interface's docstring lists, unit of work by unit of work. (A single advisory lock
around every unit of work, as before issue 19, made the cluster write one transaction at
a time.) Each unit of work sets, for itself only (`SET LOCAL`, so no session state):
- `lock_timeout`: a unit of work that waits longer than LOCK_TIMEOUT for a row or an
  advisory lock gives up: WriteConflict, 503 with Retry-After, rolled back whole;
- `idle_in_transaction_session_timeout`: a node that stalls inside a unit of work (a
  paused VM, a blocked loop) cannot hold its row locks for ever; the server ends it.
A deadlock (40P01) or a serialization failure (40001) is a WriteConflict too. None is
retried here: `async with db.transaction()` cannot run its block again (see interface).

As with SQLite's writer and readers, there are two pools, DATABASE_POOL_SIZE connections
each: one for units of work, one for reads. Readers are read-only by the session default
`default_transaction_read_only` (a guard against our own mistakes, not a permission).

Behind a pooler in transaction mode (DATABASE_TRANSACTION_POOLER, PgBouncer's
`pool_mode = transaction`) consecutive transactions may run on different server
connections: asyncpg's prepared-statement cache is off (a statement prepared on one server
connection is unknown to the next), and no startup parameter is sent (PgBouncer refuses
those it does not know, and one set on a server connection would not follow the client).
Plain reads then go without the read-only guard; snapshot reads keep it (BEGIN ... READ
ONLY), and units of work need nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

from service.db.dialect import Dialect, numbered_placeholders, positional
from service.db.interface import (
    DatabaseError,
    DatabaseUnavailable,
    ForeignKeyViolation,
    IntegrityError,
    InvalidValue,
    Params,
    Row,
    UndefinedTable,
    UniqueViolation,
    WriteConflict,
)

if TYPE_CHECKING:  # generic only in the stubs
    from asyncpg.pool import PoolConnectionProxy

    Pooled: TypeAlias = PoolConnectionProxy[asyncpg.Record]

# Row locks are held for milliseconds: a wait this long means a stalled holder.
LOCK_TIMEOUT = "5s"
# Units of work never wait on anything but the database, so they are idle for milliseconds.
IDLE_IN_UNIT_OF_WORK = "15s"
# One round trip: the simple-query protocol runs the three statements in one message.
BEGIN_UNIT_OF_WORK = (
    "BEGIN ISOLATION LEVEL READ COMMITTED;"
    " SET LOCAL lock_timeout = '{lock_timeout}';"
    " SET LOCAL idle_in_transaction_session_timeout = '{idle}'"
)
BEGIN_SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
CONNECT_TIMEOUT_SECONDS = 10.0
STATEMENT_CACHE_SIZE = 100  # asyncpg's default: each statement is parsed once per connection
_READ_ONLY = {"default_transaction_read_only": "on"}

# Units of work that collided: rolled back, worth a retry by the client.
_CONFLICTS: tuple[type[BaseException], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.LockNotAvailableError,
)

# Errors that say the server is gone or unreachable, not that a statement was wrong.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # e.g. "another operation is in progress" after a break
)


class PostgresConnection:
    """An asyncpg connection behind the engine-neutral Connection interface."""

    dialect = Dialect.POSTGRESQL

    __slots__ = ("raw",)

    def __init__(self, raw: Pooled) -> None:
        self.raw = raw

    async def fetch_all(self, sql: str, params: Params | None = None) -> Sequence[Row]:
        text, names = numbered_placeholders(sql)
        with _translate_errors():
            rows: Sequence[Row] = await self.raw.fetch(text, *positional(names, params or {}))
        return rows

    async def fetch_one(self, sql: str, params: Params | None = None) -> Row | None:
        text, names = numbered_placeholders(sql)
        with _translate_errors():
            row: Row | None = await self.raw.fetchrow(text, *positional(names, params or {}))
        return row

    async def execute(self, sql: str, params: Params | None = None) -> int:
        text, names = numbered_placeholders(sql)
        with _translate_errors():
            status: str = await self.raw.execute(text, *positional(names, params or {}))
        # The command tag: "INSERT 0 3", "UPDATE 2", "DELETE 0".
        return int(status.rsplit(" ", 1)[-1])

    async def lock(self, name: str) -> None:
        """A transaction-scoped advisory lock on `name`'s 64-bit hash (see lock_key)."""
        await self.fetch_one("SELECT pg_advisory_xact_lock(:key)", {"key": lock_key(name)})


def lock_key(name: str) -> int:
    """The advisory lock key of a named rule: the same on every node and every version.

    Two names sharing a key (one chance in 2**64) would only wait for each other.
    """
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresDatabase:
    """The database on a PostgreSQL server: `transaction()` for writes, `read()` for reads."""

    dialect = Dialect.POSTGRESQL

    def __init__(self, writers: _FairPool, readers: _FairPool) -> None:
        self._writers = writers
        self._readers = readers

    @classmethod
    async def open(
        cls, url: str, *, pool_size: int, transaction_pooler: bool = False
    ) -> PostgresDatabase:
        """Connect up to `pool_size` writers and as many readers to the server at `url`.

        With `transaction_pooler`, `url` is PgBouncer in transaction mode (see the module).
        """
        writers = await _FairPool.open(url, pool_size, pooler=transaction_pooler)
        try:
            readers = await _FairPool.open(
                url, pool_size, pooler=transaction_pooler, read_only=True
            )
        except BaseException:
            await writers.close()
            raise
        return cls(writers, readers)

    async def close(self) -> None:
        """Wait for the connections lent out to come back, then close them all."""
        await asyncio.gather(self._writers.close(), self._readers.close())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresConnection]:
        """One unit of work at READ COMMITTED, beside other nodes' (see the module)."""
        raw = await self._writers.acquire()
        try:
            with _translate_errors():
                await raw.execute(
                    BEGIN_UNIT_OF_WORK.format(lock_timeout=LOCK_TIMEOUT, idle=IDLE_IN_UNIT_OF_WORK)
                )
            yield PostgresConnection(raw)
        except BaseException:
            await asyncio.shield(self._writers.end(raw, "ROLLBACK", quietly=True))
            raise
        # Shielded with the release: a cancelled request neither leaves the transaction
        # open nor hands the connection back to the pool while COMMIT is in flight.
        await asyncio.shield(self._writers.end(raw, "COMMIT"))

    @asynccontextmanager
    async def read(self, *, snapshot: bool = False) -> AsyncIterator[PostgresConnection]:
        """A pooled connection; with `snapshot`, all statements see one consistent state."""
        raw = await self._readers.acquire()
        if not snapshot:
            try:
                yield PostgresConnection(raw)
            finally:
                await asyncio.shield(self._readers.release(raw))
            return
        try:
            with _translate_errors():
                await raw.execute(BEGIN_SNAPSHOT)
            yield PostgresConnection(raw)
        finally:
            await asyncio.shield(self._readers.end(raw, "ROLLBACK", quietly=True))


class _FairPool:
    """asyncpg's pool behind a semaphore: connections go to requests in order of arrival.

    asyncpg hands out connections through an asyncio.Queue, where a newcomer can take a
    released connection before the woken waiter runs, and that waiter queues again at the
    back (p99 ×8 at 64 connections on a pool of 10, bench/README.md). asyncio.Semaphore is
    FIFO since Python 3.11 (tests/test_fair_gate.py): nobody overtakes, and the pool behind
    it never has to queue.
    """

    def __init__(self, pool: asyncpg.Pool, size: int) -> None:
        self._pool = pool
        self._gate = asyncio.Semaphore(size)

    @classmethod
    async def open(cls, url: str, size: int, *, pooler: bool, read_only: bool = False) -> _FairPool:
        with _translate_errors():
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=size,
                timeout=CONNECT_TIMEOUT_SECONDS,
                reset=_reset,
                # Behind a transaction pooler: no statement outlives its transaction's
                # server connection, and no session setting is sent (see the module).
                statement_cache_size=0 if pooler else STATEMENT_CACHE_SIZE,
                server_settings=_READ_ONLY if read_only and not pooler else None,
            )
        return cls(pool, size)

    async def acquire(self) -> Pooled:
        await self._gate.acquire()
        try:
            with _translate_errors():
                raw: Pooled = await self._pool.acquire()
        except BaseException:
            self._gate.release()
            raise
        return raw

    async def release(self, raw: Pooled) -> None:
        try:
            await self._pool.release(raw)  # closes a broken connection
        finally:
            self._gate.release()

    async def end(self, raw: Pooled, statement: str, *, quietly: bool = False) -> None:
        """COMMIT or ROLLBACK, then give the connection back."""
        try:
            with _translate_errors():
                await raw.execute(statement)
        except DatabaseError:
            if not quietly:
                raise
        finally:
            await self.release(raw)

    async def close(self) -> None:
        await self._pool.close()


async def _reset(raw: asyncpg.Connection) -> None:
    """The pool's reset on release: only end a transaction left open.

    asyncpg's default also runs `RESET ALL; UNLISTEN *; ...`, a round trip per request,
    for session state this service never sets.
    """
    if raw.is_in_transaction():
        await raw.execute("ROLLBACK")


@contextlib.contextmanager
def _translate_errors() -> Iterator[None]:
    try:
        yield
    except asyncpg.UniqueViolationError as error:
        raise UniqueViolation(str(error)) from error
    except asyncpg.ForeignKeyViolationError as error:
        raise ForeignKeyViolation(str(error)) from error
    except asyncpg.IntegrityConstraintViolationError as error:
        raise IntegrityError(str(error)) from error
    except asyncpg.UndefinedTableError as error:
        raise UndefinedTable(str(error)) from error
    except asyncpg.DataError as error:  # its message may quote the value: keep it out
        raise InvalidValue(type(error).__name__) from error
    except _CONFLICTS as error:
        raise WriteConflict(f"{type(error).__name__}: {error}") from error
    except _UNAVAILABLE as error:
        raise DatabaseUnavailable(f"{type(error).__name__}: {error}") from error
    except asyncpg.PostgresError as error:
        raise DatabaseError(str(error)) from error
