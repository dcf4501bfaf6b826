"""The Database handle: units of work, cancellation, snapshots, pragmas, close."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from pathlib import Path

import aiosqlite
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.db import (
    Connection,
    Database,
    DatabaseError,
    DatabaseUnavailable,
    ForeignKeyViolation,
    migrations,
    open_database,
    postgres,
)
from service.db.dialect import Dialect
from service.db.sqlite import BUSY_TIMEOUT_MS, SqliteDatabase, Synchronous
from service.settings import Settings
from tests.conftest import log_lines

NOW = "2026-01-01T00:00:00+00:00"
INSERT = (
    "INSERT INTO products (name, name_folded, price_cents, created_at, updated_at) "
    "VALUES (:name, :folded, 100, :now, :now)"
)
SQLITE_FILE = pytest.mark.sqlite_only("opens the SQLite file beside the service")


class Boom(Exception):
    """Raised inside a unit of work to make it fail."""


async def insert(conn: Connection, name: str) -> None:
    await conn.execute(INSERT, {"name": name, "folded": name.casefold(), "now": NOW})


async def names(database: Database) -> set[str]:
    async with database.read() as conn:
        rows = await conn.fetch_all("SELECT name FROM products")
    return {row[0] for row in rows}


def names_sync(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM products")}


# --- transactions never interleave -------------------------------------------------------


@SQLITE_FILE
async def test_naive_shared_connection_interleaves_transactions(migrated: Settings) -> None:
    """Control experiment: without the lock, B's commit commits A's half-done insert."""
    conn = await aiosqlite.connect(migrated.database_path)  # sqlite3's implicit transactions
    try:
        a_inserted = asyncio.Event()

        async def a() -> None:
            try:
                await conn.execute(INSERT, {"name": "from-a", "folded": "from-a", "now": NOW})
                a_inserted.set()
                await asyncio.sleep(0.05)
                raise Boom
            except Boom:
                await conn.rollback()

        async def b() -> None:
            await a_inserted.wait()
            await conn.execute(INSERT, {"name": "from-b", "folded": "from-b", "now": NOW})
            await conn.commit()

        await asyncio.gather(a(), b())
    finally:
        await conn.close()
    # A failed and rolled back, yet its row was committed by B: the bug the lock prevents.
    assert names_sync(migrated.database_path) == {"from-a", "from-b"}


async def test_units_of_work_of_two_coroutines_never_interleave(database: Database) -> None:
    """B never joins A's transaction: on SQLite it waits for A; on PostgreSQL it runs beside."""
    a_inserted = asyncio.Event()
    order: list[str] = []

    async def a() -> None:
        with pytest.raises(Boom):
            async with database.transaction() as conn:
                await insert(conn, "from-a")
                a_inserted.set()
                await asyncio.sleep(0.05)
                order.append("a-raises")
                raise Boom

    async def b() -> None:
        await a_inserted.wait()
        async with database.transaction() as conn:
            order.append("b-runs")
            await insert(conn, "from-b")

    await asyncio.wait_for(asyncio.gather(a(), b()), 5)
    if database.dialect is Dialect.SQLITE:
        assert order == ["a-raises", "b-runs"]  # the single writer: B waited for A to end
    else:
        assert order == ["b-runs", "a-raises"]  # unrelated rows: B did not wait
    assert await names(database) == {"from-b"}  # A's rollback did not take B's row with it


async def test_many_concurrent_units_of_work_all_commit(database: Database) -> None:
    async def work(i: int) -> None:
        async with database.transaction() as conn:
            await insert(conn, f"p{i:02d}")
            await asyncio.sleep(0)
            await insert(conn, f"q{i:02d}")

    await asyncio.wait_for(asyncio.gather(*(work(i) for i in range(20))), 10)
    assert len(await names(database)) == 40


@SQLITE_FILE
async def test_a_unit_of_work_waits_for_another_process_writing(
    database: Database, migrated: Settings
) -> None:
    other = sqlite3.connect(migrated.database_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds SQLite's write lock

        async def work() -> None:
            async with database.transaction() as conn:
                await insert(conn, "waited")

        task = asyncio.create_task(work())
        await asyncio.sleep(0.1)
        assert not task.done()  # waiting in busy_timeout, not failing with "locked"
        other.execute("COMMIT")
        await asyncio.wait_for(task, 5)
    finally:
        other.close()
    # Committed: another connection sees it, with nothing left open on the writer.
    assert names_sync(migrated.database_path) == {"waited"}
    async with database.transaction() as conn:
        await insert(conn, "next")
    assert names_sync(migrated.database_path) == {"waited", "next"}


# --- locked out, or refused at COMMIT --------------------------------------------------------

SHORT_BUSY_TIMEOUT_MS = 50  # what a unit of work waits for the other process, in these tests


@SQLITE_FILE
async def test_still_locked_after_the_busy_timeout_is_database_unavailable(
    migrated: Settings,
) -> None:
    """Another process keeps SQLite's write lock past busy_timeout: retryable, not a failure."""
    database = await SqliteDatabase.open(
        migrated.database_path,
        readers=1,
        synchronous=Synchronous.NORMAL,
        busy_timeout_ms=SHORT_BUSY_TIMEOUT_MS,
    )
    try:
        other = sqlite3.connect(migrated.database_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # held for the whole attempt
            ran: list[str] = []
            with pytest.raises(DatabaseUnavailable, match="database is locked"):
                async with database.transaction() as conn:
                    ran.append("block")
                    await insert(conn, "locked out")
            assert ran == []  # the block never started: nothing was written
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert names_sync(migrated.database_path) == set()
        async with database.transaction() as conn:  # the writer is not left in a transaction
            await insert(conn, "after")
    finally:
        await database.close()
    assert names_sync(migrated.database_path) == {"after"}


@SQLITE_FILE
async def test_connections_opening_a_new_file_at_once_all_switch_it_to_wal(tmp_path: Path) -> None:
    """The workers of `run.py --workers` start together on a file that `yoyo apply` left in
    rollback-journal mode: SQLite refuses all but one switch to WAL at once, without waiting
    in busy_timeout, and a worker died at start with "database is locked" (2-6% of starts)."""
    for attempt in range(100):  # each attempt races four openers on a new file
        path = tmp_path / f"{attempt}.db"
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE t (x)")
            conn.commit()
        opened = await asyncio.gather(
            *(
                SqliteDatabase.open(path, readers=1, synchronous=Synchronous.NORMAL)
                for _ in range(4)
            ),
            return_exceptions=True,
        )
        for each in opened:
            if isinstance(each, SqliteDatabase):
                await each.close()
        assert [type(each) for each in opened] == [SqliteDatabase] * 4, (attempt, opened)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@SQLITE_FILE
async def test_a_commit_the_database_refuses_is_translated_and_rolled_back(
    database: Database, migrated: Settings
) -> None:
    """COMMIT runs inside the error translation too; what it refused is not left half-done."""
    with pytest.raises(ForeignKeyViolation, match="FOREIGN KEY"):
        async with database.transaction() as conn:
            await conn.execute("PRAGMA defer_foreign_keys = ON")  # checked at COMMIT instead
            await insert(conn, "half")
            await conn.execute(
                "INSERT INTO spent_refresh_tokens (token_hash, session_id) "
                "VALUES ('hash', 'no-such-session')"
            )
    assert names_sync(migrated.database_path) == set()
    async with database.transaction() as conn:
        await insert(conn, "after")
    assert names_sync(migrated.database_path) == {"after"}


@SQLITE_FILE
async def test_a_write_locked_out_through_http_is_a_503_with_retry_after(
    client: TestClient[web.Request, web.Application],
    migrated: Settings,
) -> None:
    """A request's unit of work that cannot get the write lock (another worker process holds
    it past the app's busy timeout, 5 s) is told to retry, and has written nothing."""
    other = sqlite3.connect(migrated.database_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        locked_out = await client.post("/products/", json={"name": "Tea", "price": 4.5})
        text = await locked_out.text()
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert locked_out.status == 503, text
    assert locked_out.content_type == "application/problem+json"
    assert locked_out.headers["Retry-After"] == "5"
    body = json.loads(text)
    assert body["status"] == 503
    assert body["detail"] == "The database cannot be reached; try again shortly"
    assert names_sync(migrated.database_path) == set()
    assert any(
        "Database unavailable in POST /products/: database is locked" in line
        for line in log_lines(migrated)
    )
    retried = await client.post("/products/", json={"name": "Tea", "price": 4.5})
    assert retried.status == 201, await retried.text()
    assert names_sync(migrated.database_path) == {"Tea"}


# --- cancellation -------------------------------------------------------------------------


async def test_cancelled_mid_transaction_rolls_back_and_does_not_wedge(
    database: Database, migrated: Settings
) -> None:
    inserted = asyncio.Event()

    async def work() -> None:
        async with database.transaction() as conn:
            await insert(conn, "cancelled")
            inserted.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(work())
    await asyncio.wait_for(inserted.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def next_unit() -> None:
        async with database.transaction() as conn:
            await insert(conn, "after")

    await asyncio.wait_for(next_unit(), 5)
    assert await names(database) == {"after"}


async def test_cancelled_while_waiting_for_the_writer(database: Database) -> None:
    """Queued behind the single writer (SQLite) or a lock another unit of work holds."""
    holder_inside = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with database.transaction() as conn:
            await conn.lock("test:writer")
            holder_inside.set()
            await insert(conn, "holder")
            await release.wait()

    async def waiter() -> None:
        async with database.transaction() as conn:
            await conn.lock("test:writer")
            await insert(conn, "waiter")

    holding = asyncio.create_task(holder())
    await asyncio.wait_for(holder_inside.wait(), 5)
    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0.02)
    assert not waiting.done()  # it is queued behind the holder
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await asyncio.wait_for(holding, 5)

    async def next_unit() -> None:
        async with database.transaction() as conn:
            await insert(conn, "after")

    await asyncio.wait_for(next_unit(), 5)
    assert await names(database) == {"holder", "after"}


@SQLITE_FILE
async def test_cancelled_while_begin_waits_for_another_process(
    database: Database, migrated: Settings
) -> None:
    """BEGIN IMMEDIATE waits in busy_timeout while another process writes; cancel it there."""
    other = sqlite3.connect(migrated.database_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds SQLite's write lock

        async def work() -> None:
            async with database.transaction() as conn:
                await insert(conn, "cancelled")

        task = asyncio.create_task(work())
        await asyncio.sleep(0.1)
        assert not task.done()
        task.cancel()
        await asyncio.sleep(0.05)
        other.execute("COMMIT")  # now the cancelled task's BEGIN goes through on its thread
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
    finally:
        other.close()

    async def next_unit() -> None:
        async with database.transaction() as conn:
            await insert(conn, "after")

    await asyncio.wait_for(next_unit(), 5)
    assert names_sync(migrated.database_path) == {"after"}


# --- reads --------------------------------------------------------------------------------


async def test_snapshot_read_sees_one_consistent_state(database: Database) -> None:
    async with database.transaction() as conn:
        await insert(conn, "first")

    async def add(name: str) -> None:
        async with database.transaction() as conn:
            await insert(conn, name)

    async with database.read(snapshot=True) as reader:
        before = await reader.fetch_all("SELECT count(*) FROM products")
        await asyncio.wait_for(add("second"), 5)
        after = await reader.fetch_all("SELECT count(*) FROM products")
        listed = await reader.fetch_all("SELECT name FROM products")
    assert before[0][0] == after[0][0] == 1
    assert [row[0] for row in listed] == ["first"]
    assert await names(database) == {"first", "second"}


async def test_snapshot_read_cancelled_at_its_start_leaves_no_stale_reader(
    migrated: Settings,
) -> None:
    """A snapshot read cancelled while its BEGIN is on the reader's thread: the reader must
    go back to the pool outside any transaction (else later reads see stale data)."""
    database = await open_database(migrated, pool_size=1)
    try:

        async def snapshot_count() -> int:
            async with database.read(snapshot=True) as reader:
                rows = await reader.fetch_all("SELECT count(*) FROM products")
            return int(rows[0][0])

        task = asyncio.create_task(snapshot_count())
        await asyncio.sleep(0)  # the task now waits for its BEGIN
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        async with database.transaction() as conn:
            await insert(conn, "fresh")
        assert await asyncio.wait_for(snapshot_count(), 5) == 1
        assert await names(database) == {"fresh"}
    finally:
        await database.close()


async def test_plain_read_sees_each_commit(database: Database) -> None:
    """Control for the snapshot test: without snapshot the second statement sees the commit."""

    async def add(name: str) -> None:
        async with database.transaction() as conn:
            await insert(conn, name)

    async with database.read() as reader:
        before = await reader.fetch_all("SELECT count(*) FROM products")
        await asyncio.wait_for(add("second"), 5)
        after = await reader.fetch_all("SELECT count(*) FROM products")
    assert (before[0][0], after[0][0]) == (0, 1)


async def test_reads_proceed_while_a_write_transaction_is_open(database: Database) -> None:
    async with database.transaction() as conn:
        await insert(conn, "committed")

    holder_inside = asyncio.Event()
    release = asyncio.Event()

    async def long_write() -> None:
        async with database.transaction() as conn:
            await insert(conn, "uncommitted")
            holder_inside.set()
            await release.wait()

    writing = asyncio.create_task(long_write())
    try:
        await asyncio.wait_for(holder_inside.wait(), 5)
        # The read finishes while the write transaction is still open: it never waited for
        # it (the timeout only turns a read that would wait forever into a failure).
        seen = await asyncio.wait_for(names(database), 5)
        assert not writing.done()  # the write transaction was open all along
        assert seen == {"committed"}  # and its uncommitted row is invisible
    finally:
        release.set()
        await asyncio.wait_for(writing, 5)
    assert await names(database) == {"committed", "uncommitted"}


async def test_readers_cannot_write(database: Database) -> None:
    async with database.read() as reader:
        with pytest.raises(DatabaseError, match=r"readonly|read-only"):
            await insert(reader, "sneaky")
    assert await names(database) == set()


# --- pragmas ------------------------------------------------------------------------------


async def pragma(conn: Connection, name: str) -> object:
    rows = await conn.fetch_all(f"PRAGMA {name}")
    return rows[0][0]


@SQLITE_FILE
@pytest.mark.parametrize(("synchronous", "level"), [(Synchronous.NORMAL, 1), (Synchronous.FULL, 2)])
async def test_pragmas_are_in_force_on_every_connection(
    migrated: Settings, synchronous: Synchronous, level: int
) -> None:
    database = await SqliteDatabase.open(migrated.database_path, readers=3, synchronous=synchronous)
    try:
        connections: list[Connection] = []
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(3):  # hold every reader at once, so each is checked
                connections.append(await stack.enter_async_context(database.read()))
            assert len({id(c) for c in connections}) == 3
            writer = await stack.enter_async_context(database.transaction())
            for conn in [writer, *connections]:
                assert str(await pragma(conn, "journal_mode")).lower() == "wal"
                assert await pragma(conn, "foreign_keys") == 1
                assert await pragma(conn, "busy_timeout") == BUSY_TIMEOUT_MS
                assert await pragma(conn, "synchronous") == level
            for conn in connections:
                assert await pragma(conn, "query_only") == 1
            assert await pragma(writer, "query_only") == 0
    finally:
        await database.close()
    assert BUSY_TIMEOUT_MS >= 1000


# --- close --------------------------------------------------------------------------------


@SQLITE_FILE
async def test_close_stops_every_connection_thread(migrated: Settings) -> None:
    """aiosqlite's threads are not daemons: one left running would hang the process exit."""
    before = set(threading.enumerate())
    baseline = threading.active_count()
    database = await SqliteDatabase.open(
        migrated.database_path, readers=4, synchronous=Synchronous.NORMAL
    )
    try:
        opened = set(threading.enumerate()) - before
        assert len(opened) >= 5  # one thread per connection: the writer and 4 readers
        assert not any(thread.daemon for thread in opened)
        async with database.transaction() as conn:
            await insert(conn, "xx")
        assert await names(database) == {"xx"}
    finally:
        await database.close()
    deadline = time.monotonic() + 2
    while any(t.is_alive() for t in opened) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert not [t for t in opened if t.is_alive()]
    assert threading.active_count() <= baseline


async def test_close_waits_for_the_unit_of_work_in_progress(migrated: Settings) -> None:
    database = await open_database(migrated, pool_size=1)
    inside = asyncio.Event()

    async def work() -> None:
        async with database.transaction() as conn:
            inside.set()
            await asyncio.sleep(0.05)
            await insert(conn, "finished")

    task = asyncio.create_task(work())
    await inside.wait()
    await asyncio.wait_for(database.close(), 5)
    await task
    reopened = await open_database(migrated)
    try:
        assert await names(reopened) == {"finished"}
    finally:
        await reopened.close()


async def test_open_creates_missing_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "db.sqlite"
    migrations.apply_pending(path)
    database = await SqliteDatabase.open(path, readers=1, synchronous=Synchronous.NORMAL)
    await database.close()
    assert path.exists()


@pytest.mark.postgresql_only
async def test_a_stalled_unit_of_work_cannot_hold_its_locks_for_ever(
    database: Database,
) -> None:
    """The server ends a session idle inside a unit of work, and its locks with it."""
    async with database.transaction() as conn:
        idle = await conn.fetch_one("SHOW idle_in_transaction_session_timeout")
        waits = await conn.fetch_one("SHOW lock_timeout")
    assert idle is not None and idle[0] == "15s"
    assert waits is not None and waits[0] == "5s"
    async with database.read() as conn:  # SET LOCAL: nothing stays on the session
        outside = await conn.fetch_one("SHOW idle_in_transaction_session_timeout")
    assert outside is not None and outside[0] == "0"


@pytest.mark.postgresql_only
async def test_a_unit_of_work_idle_past_its_timeout_is_ended_with_its_locks(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "IDLE_IN_UNIT_OF_WORK", "200ms")
    with pytest.raises(DatabaseUnavailable):
        async with database.transaction() as conn:
            await conn.lock("test:stalled")
            await insert(conn, "stalled")
            await asyncio.sleep(1)  # a paused node
            await insert(conn, "too late")
    monkeypatch.undo()
    async with database.transaction() as conn:  # the lock went with the ended session
        await asyncio.wait_for(conn.lock("test:stalled"), 5)
        await insert(conn, "after")
    assert await names(database) == {"after"}


@pytest.mark.postgresql_only
async def test_a_server_restart_during_a_unit_of_work_is_database_unavailable(
    database: Database, migrated: Settings
) -> None:
    """A writer waiting for a lock when the server ends its session: 503, not a 500."""
    other = await open_database(migrated, pool_size=1)

    async def waits() -> None:
        async with database.transaction() as conn:
            await conn.lock("test:held")
            await insert(conn, "waits")

    try:
        async with other.transaction() as holder:  # another node holds the lock
            await holder.lock("test:held")
            waiting = asyncio.create_task(waits())
            await asyncio.sleep(0.2)
            await holder.fetch_all(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            with pytest.raises(DatabaseUnavailable):
                await asyncio.wait_for(waiting, 5)
    finally:
        await other.close()
    await asyncio.wait_for(_insert_in_a_unit_of_work(database, "after"), 5)  # recovered
    assert await names(database) == {"after"}


async def _insert_in_a_unit_of_work(database: Database, name: str) -> None:
    async with database.transaction() as conn:
        await insert(conn, name)
