"""SQLite through aiosqlite: one writer behind a lock for units of work, a few readers.

WAL lets readers run while a write is in progress, so reads never queue behind a long
write. Every write runs in `BEGIN IMMEDIATE ... COMMIT` while holding an asyncio lock: a
shared aiosqlite connection would otherwise interleave two coroutines' transactions (one's
COMMIT would commit the other's half-done work). `BEGIN IMMEDIATE` also takes SQLite's
write lock at once, so writers in other processes wait in `busy_timeout` instead of
failing later with "database is locked". One still waiting when the timeout ends gets
DatabaseUnavailable (503 with Retry-After), as does every "locked" or "busy" answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from service.db.dialect import Dialect
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
from service.files import private_file

BUSY_TIMEOUT_MS = 5000
# SQLite's answers that say "another connection holds the lock": retryable, not a failure.
_UNAVAILABLE = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class Synchronous(enum.StrEnum):
    """SQLite's `PRAGMA synchronous` choices that keep acknowledged writes."""

    NORMAL = "NORMAL"
    FULL = "FULL"


class SqliteConnection:
    """An aiosqlite connection behind the engine-neutral Connection interface."""

    dialect = Dialect.SQLITE

    __slots__ = ("raw",)

    def __init__(self, raw: aiosqlite.Connection) -> None:
        self.raw = raw

    async def fetch_all(self, sql: str, params: Params | None = None) -> Sequence[Row]:
        with _translate_errors():
            return list(await self.raw.execute_fetchall(sql, params or {}))

    async def fetch_one(self, sql: str, params: Params | None = None) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def execute(self, sql: str, params: Params | None = None) -> int:
        with _translate_errors():
            cursor = await self.raw.execute(sql, params or {})
        try:
            return cursor.rowcount
        finally:
            await cursor.close()

    async def lock(self, name: str) -> None:
        """Nothing to wait for: SQLite's units of work run one at a time."""


class SqliteDatabase:
    """The database in one SQLite file: `transaction()` for writes, `read()` for reads."""

    dialect = Dialect.SQLITE

    def __init__(self, writer: aiosqlite.Connection, readers: list[aiosqlite.Connection]) -> None:
        self._writer = SqliteConnection(writer)
        self._write_lock = asyncio.Lock()
        self._all_readers = readers
        # The gate admits readers in order of arrival (asyncio.Semaphore is FIFO since 3.11);
        # behind it the queue never waits.
        self._reader_gate = asyncio.Semaphore(len(readers))
        self._idle_readers: asyncio.Queue[SqliteConnection] = asyncio.Queue()
        for reader in readers:
            self._idle_readers.put_nowait(SqliteConnection(reader))

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        readers: int,
        synchronous: Synchronous,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> SqliteDatabase:
        """Open the writer and `readers` reader connections to the file at `path`.

        `busy_timeout_ms`: how long a statement waits for another process's lock.
        """
        private_file(path)  # owner-only; SQLite gives -wal and -shm the same mode
        writer = await _connect(path, synchronous, busy_timeout_ms)
        opened = [writer]
        try:
            await _use_wal(writer, busy_timeout_ms)
            for _ in range(readers):
                reader = await _connect(path, synchronous, busy_timeout_ms)
                opened.append(reader)
                await reader.execute_fetchall("PRAGMA query_only = ON")
        except BaseException:
            await asyncio.gather(*(c.close() for c in opened), return_exceptions=True)
            raise
        return cls(writer, opened[1:])

    async def close(self) -> None:
        """Close every connection: aiosqlite's threads are not daemons and would hang exit."""
        async with self._write_lock:
            await asyncio.gather(
                self._writer.raw.close(),
                *(reader.close() for reader in self._all_readers),
                return_exceptions=True,
            )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteConnection]:
        """One unit of work: committed if the block succeeds, rolled back if it raises.

        Cancellation (a client gone, a timeout) rolls back too; the rollback and the commit
        are shielded so that a cancelled request cannot leave the connection mid-transaction.
        """
        async with self._write_lock:
            try:
                # Inside the try: a task cancelled while BEGIN waits in busy_timeout (another
                # process writing) leaves BEGIN to finish on aiosqlite's thread; the ROLLBACK
                # queued behind it undoes it instead of wedging the next unit of work.
                with _translate_errors():  # "database is locked" after busy_timeout: a 503
                    await self._writer.raw.execute("BEGIN IMMEDIATE")
                yield self._writer
                with _translate_errors():
                    await asyncio.shield(self._writer.raw.execute("COMMIT"))
            except BaseException:
                await asyncio.shield(_rollback(self._writer.raw))
                raise

    @asynccontextmanager
    async def read(self, *, snapshot: bool = False) -> AsyncIterator[SqliteConnection]:
        """A reader connection; with `snapshot`, all statements see one consistent state."""
        await self._reader_gate.acquire()
        reader = self._idle_readers.get_nowait()
        try:
            if not snapshot:
                yield reader
                return
            try:
                # Inside the try: if cancelled while BEGIN is queued on the reader's thread,
                # BEGIN still runs there, and the ROLLBACK behind it ends it before the
                # reader goes back to the pool.
                await reader.raw.execute("BEGIN")
                yield reader
            finally:
                await asyncio.shield(_rollback(reader.raw))
        finally:
            self._idle_readers.put_nowait(reader)
            self._reader_gate.release()


async def _use_wal(writer: aiosqlite.Connection, busy_timeout_ms: int) -> None:
    """Switch the file to WAL (it stays so), retrying "locked" for up to `busy_timeout_ms`.

    Each connection switching takes a shared lock and then wants the file to itself. When
    several do so at once (the workers of `run.py --workers` starting on a file that `yoyo
    apply` left in rollback-journal mode), SQLite refuses all but one at once, without
    waiting in busy_timeout: waiting would deadlock. The others succeed when tried again.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + busy_timeout_ms / 1000
    while True:
        try:
            await writer.execute_fetchall("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if not isinstance(_translated(error), DatabaseUnavailable) or loop.time() > deadline:
                raise
        await asyncio.sleep(0.01)


async def _rollback(connection: aiosqlite.Connection) -> None:
    # OperationalError: COMMIT had already completed, or BEGIN never ran: nothing to undo.
    with contextlib.suppress(sqlite3.OperationalError):
        await connection.execute("ROLLBACK")


@contextlib.contextmanager
def _translate_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as error:
        raise _translated(error) from error
    except UnicodeEncodeError as error:  # a lone surrogate cannot become UTF-8
        raise InvalidValue(type(error).__name__) from error


def _translated(error: sqlite3.Error) -> DatabaseError:
    """The engine-neutral exception for a sqlite3 error (its message is kept)."""
    message = str(error)
    if isinstance(error, sqlite3.IntegrityError):
        if message.startswith("UNIQUE"):
            return UniqueViolation(message)
        if message.startswith("FOREIGN KEY"):
            return ForeignKeyViolation(message)
        return IntegrityError(message)
    if message.startswith("no such table"):
        return UndefinedTable(message)
    # Errors the sqlite3 module raises itself (a closed connection) carry no code. The
    # primary code is the low byte: SQLITE_BUSY_SNAPSHOT is a SQLITE_BUSY too.
    if (getattr(error, "sqlite_errorcode", 0) & 0xFF) in _UNAVAILABLE:
        return DatabaseUnavailable(message)
    return DatabaseError(message)


async def _connect(
    path: Path, synchronous: Synchronous, busy_timeout_ms: int
) -> aiosqlite.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves (it cannot be changed later).
    connection = await aiosqlite.connect(path, isolation_level=None)
    try:
        connection.row_factory = sqlite3.Row
        await connection.execute_fetchall(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        await connection.execute_fetchall("PRAGMA foreign_keys = ON")
        await connection.execute_fetchall(f"PRAGMA synchronous = {synchronous.value}")
    except BaseException:
        await connection.close()
        raise
    return connection
