"""SQLite connections: one writer behind a lock for units of work, a small pool of readers.

WAL lets readers run while a write is in progress, so reads never queue behind a long
write. Every write runs in `BEGIN IMMEDIATE ... COMMIT` while holding an asyncio lock: a
shared aiosqlite connection would otherwise interleave two coroutines' transactions (one's
COMMIT would commit the other's half-done work). `BEGIN IMMEDIATE` also takes SQLite's
write lock at once, so writers in other processes wait in `busy_timeout` instead of
failing later with "database is locked".
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from service.settings import Synchronous

BUSY_TIMEOUT_MS = 5000


class Database:
    """The service's database handle: `transaction()` for writes, `read()` for reads."""

    def __init__(self, writer: aiosqlite.Connection, readers: list[aiosqlite.Connection]) -> None:
        self._writer = writer
        self._write_lock = asyncio.Lock()
        self._all_readers = readers
        self._idle_readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        for reader in readers:
            self._idle_readers.put_nowait(reader)

    @classmethod
    async def open(cls, path: Path, *, readers: int, synchronous: Synchronous) -> Database:
        """Open the writer and `readers` reader connections to the file at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _connect(path, synchronous)
        opened = [writer]
        try:
            await writer.execute_fetchall("PRAGMA journal_mode = WAL")
            for _ in range(readers):
                reader = await _connect(path, synchronous)
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
                self._writer.close(),
                *(reader.close() for reader in self._all_readers),
                return_exceptions=True,
            )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One unit of work: committed if the block succeeds, rolled back if it raises.

        Cancellation (a client gone, a timeout) rolls back too; the rollback and the commit
        are shielded so that a cancelled request cannot leave the connection mid-transaction.
        """
        async with self._write_lock:
            try:
                # Inside the try: a task cancelled while BEGIN waits in busy_timeout (another
                # process writing) leaves BEGIN to finish on aiosqlite's thread; the ROLLBACK
                # queued behind it undoes it instead of wedging the next unit of work.
                await self._writer.execute("BEGIN IMMEDIATE")
                yield self._writer
                await asyncio.shield(self._writer.execute("COMMIT"))
            except BaseException:
                await asyncio.shield(self._rollback())
                raise

    @asynccontextmanager
    async def single_statement(self) -> AsyncIterator[aiosqlite.Connection]:
        """The writer, for a unit of work that is exactly one statement.

        SQLite runs a lone statement as its own transaction, atomic and as durable as a
        COMMIT, so this saves the BEGIN and COMMIT round trips to aiosqlite's thread. The
        lock still keeps every other unit of work off the connection meanwhile. A second
        statement inside this block would run as a separate transaction: use transaction().
        """
        async with self._write_lock:
            yield self._writer

    @asynccontextmanager
    async def read(self, *, snapshot: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """A reader connection; with `snapshot`, all statements see one consistent state."""
        reader = await self._idle_readers.get()
        try:
            if not snapshot:
                yield reader
                return
            try:
                # Inside the try: if cancelled while BEGIN is queued on the reader's thread,
                # BEGIN still runs there, and the ROLLBACK behind it ends it before the
                # reader goes back to the pool.
                await reader.execute("BEGIN")
                yield reader
            finally:
                await asyncio.shield(_rollback(reader))
        finally:
            self._idle_readers.put_nowait(reader)

    async def _rollback(self) -> None:
        await _rollback(self._writer)


async def _rollback(connection: aiosqlite.Connection) -> None:
    # OperationalError: COMMIT had already completed, or BEGIN never ran: nothing to undo.
    with contextlib.suppress(sqlite3.OperationalError):
        await connection.execute("ROLLBACK")


async def rows_changed(
    connection: aiosqlite.Connection, sql: str, params: Mapping[str, object]
) -> int:
    """Run one INSERT/UPDATE/DELETE and return how many rows it changed."""
    cursor = await connection.execute(sql, params)
    try:
        return cursor.rowcount
    finally:
        await cursor.close()


async def _connect(path: Path, synchronous: Synchronous) -> aiosqlite.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves (it cannot be changed later).
    connection = await aiosqlite.connect(path, isolation_level=None)
    try:
        connection.row_factory = sqlite3.Row
        await connection.execute_fetchall(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await connection.execute_fetchall("PRAGMA foreign_keys = ON")
        await connection.execute_fetchall(f"PRAGMA synchronous = {synchronous.value}")
    except BaseException:
        await connection.close()
        raise
    return connection
