"""A Database that reports its waits and its units of work's outcomes to an observer.

It wraps either engine from outside, so both are measured alike and neither engine's
transaction code carries a hook: the wait is the time until the block has its connection
with the transaction begun (the pool or SQLite's writer lock, then BEGIN), and a unit of
work ends committed (the block and COMMIT succeeded), rolled back (the block raised or was
cancelled), in conflict (WriteConflict: a lock waited for too long or a deadlock, on
PostgreSQL; a 503), or unavailable (DatabaseUnavailable otherwise: the database could not
serve, a 503).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Protocol

from service.db.dialect import Dialect
from service.db.interface import Connection, Database, DatabaseUnavailable, WriteConflict


class DatabaseObserver(Protocol):
    """What is told of each read and unit of work (service.metrics.registry.Metrics)."""

    def connection_waited(self, kind: str, seconds: float) -> None: ...

    def unit_of_work_ended(self, outcome: str) -> None: ...


COMMITTED = "committed"
ROLLED_BACK = "rolled_back"
CONFLICT = "conflict"
UNAVAILABLE = "unavailable"
OUTCOMES = (COMMITTED, ROLLED_BACK, CONFLICT, UNAVAILABLE)
READ, WRITE = "read", "write"  # the kinds of wait
KINDS = (READ, WRITE)


class ObservedDatabase:
    """`database`, with every read's and unit of work's wait and outcome told to `observer`."""

    def __init__(self, database: Database, observer: DatabaseObserver) -> None:
        self._database = database
        self._observer = observer

    @property
    def dialect(self) -> Dialect:
        return self._database.dialect

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        asked = time.perf_counter()
        try:
            async with self._database.transaction() as conn:
                self._observer.connection_waited(WRITE, time.perf_counter() - asked)
                yield conn
        except WriteConflict:  # load on a row or a rule, not an outage
            self._observer.unit_of_work_ended(CONFLICT)
            raise
        except DatabaseUnavailable:
            self._observer.unit_of_work_ended(UNAVAILABLE)
            raise
        except BaseException:
            self._observer.unit_of_work_ended(ROLLED_BACK)
            raise
        self._observer.unit_of_work_ended(COMMITTED)

    def read(self, *, snapshot: bool = False) -> AbstractAsyncContextManager[Connection]:
        return _ObservedRead(self._database.read(snapshot=snapshot), self._observer)

    async def close(self) -> None:
        await self._database.close()


class _ObservedRead:
    """A read's context manager, timed until it has its connection.

    A class, not @asynccontextmanager: every GET goes through it, and a generator-based
    wrapper cost 3 µs a request, more than the histogram it feeds (bench/README.md, Metrics).
    """

    __slots__ = ("_inner", "_observer")

    def __init__(self, inner: AbstractAsyncContextManager[Connection], observer: DatabaseObserver):
        self._inner = inner
        self._observer = observer

    async def __aenter__(self) -> Connection:
        asked = time.perf_counter()
        conn = await self._inner.__aenter__()
        self._observer.connection_waited(READ, time.perf_counter() - asked)
        return conn

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> bool | None:
        return await self._inner.__aexit__(kind, error, trace)
