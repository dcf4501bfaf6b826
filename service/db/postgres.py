"""PostgreSQL through an asyncpg connection pool, with the guarantees of service.db.interface.

Units of work never interleave, on one node or across many: each transaction first takes
one transaction-scoped advisory lock, so writers run one at a time as on SQLite, and every
check-then-write (the last active superuser, the login throttle, refresh-token rotation,
If-Match) holds without row locks or SERIALIZABLE retries. The lock is released by COMMIT
or ROLLBACK, and by the server if a node dies. Reads take no lock and scale across nodes.

As with SQLite's writer and readers, there are two pools: a small one for units of work
(they run one at a time anyway) and DATABASE_POOL_SIZE read-only connections for reads:
`default_transaction_read_only` makes the server refuse a write slipped into a read. It
guards against our own mistakes; it is a session default, not a permission.
"""

from __future__ import annotations

import asyncio
import contextlib
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
)

if TYPE_CHECKING:  # generic only in the stubs
    from asyncpg.pool import PoolConnectionProxy

    Pooled: TypeAlias = PoolConnectionProxy[asyncpg.Record]

# pg_advisory_xact_lock's key for "a unit of work is running"; any fixed bigint would do.
WRITE_LOCK_KEY = 0x5E_ED_0001
BEGIN_UNIT_OF_WORK = f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})"
BEGIN_SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
CONNECT_TIMEOUT_SECONDS = 10.0
# One unit of work runs while the next waits for the lock at the server, ready to go.
WRITER_CONNECTIONS = 2
_READ_ONLY = {"default_transaction_read_only": "on"}
# A node that stalls inside a unit of work (a paused VM, a blocked loop) would hold every
# node's write lock: the server ends such a session, and with it the lock, after this.
# Units of work never wait on anything but the database, so they are idle for milliseconds.
_WRITERS = {"idle_in_transaction_session_timeout": "15s"}

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


class PostgresDatabase:
    """The database on a PostgreSQL server: `transaction()` for writes, `read()` for reads."""

    dialect = Dialect.POSTGRESQL

    def __init__(self, writers: _FairPool, readers: _FairPool) -> None:
        self._writers = writers
        self._readers = readers

    @classmethod
    async def open(cls, url: str, *, pool_size: int) -> PostgresDatabase:
        """Connect the writers' pool and up to `pool_size` readers to the server at `url`."""
        writers = await _FairPool.open(url, WRITER_CONNECTIONS, _WRITERS)
        try:
            readers = await _FairPool.open(url, pool_size, _READ_ONLY)
        except BaseException:
            await writers.close()
            raise
        return cls(writers, readers)

    async def close(self) -> None:
        """Wait for the connections lent out to come back, then close them all."""
        await asyncio.gather(self._writers.close(), self._readers.close())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresConnection]:
        """One unit of work, alone among all nodes' units of work (see the module)."""
        raw = await self._writers.acquire()
        try:
            with _translate_errors():  # a writer waits here for the lock: a restart hits it
                await raw.execute(BEGIN_UNIT_OF_WORK)
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
    async def open(cls, url: str, size: int, server_settings: dict[str, str]) -> _FairPool:
        with _translate_errors():
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=size,
                timeout=CONNECT_TIMEOUT_SECONDS,
                reset=_reset,
                server_settings=server_settings,
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
    except _UNAVAILABLE as error:
        raise DatabaseUnavailable(f"{type(error).__name__}: {error}") from error
    except asyncpg.PostgresError as error:
        raise DatabaseError(str(error)) from error
