"""The CPU the metrics add to one GET /products/{id}, measured alone (best of repeats).

    .venv/bin/python bench/lib/metrics_cost.py

A GET records: the in-flight gauge up and down, the request counter, the latency histogram
(the metrics middleware), one read's connection wait and the wrapper around it
(service/db/observed.py). Each part runs N times; the best of several repeats is kept,
which is what the machine can do when nothing else runs, so a busy machine (other
sessions' tests) disturbs it far less than it disturbs req/s. Compare the sum with the CPU
one GET costs the server (server CPU s / requests in a bench run).
"""

from __future__ import annotations

import asyncio
import sys
import time
import timeit
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from service.db.observed import ObservedDatabase
from service.metrics.registry import Metrics

N = 200_000
REPEATS = 7


class _Stub:
    """A Database whose read() does nothing: what is left is the wrapper's own cost."""

    dialect = None

    @asynccontextmanager
    async def read(self, *, snapshot: bool = False) -> AsyncIterator[None]:
        yield None


def _middleware_work(metrics: Metrics) -> float:
    """What service/metrics/web.py's middleware does around one request."""

    def one() -> None:
        started = time.perf_counter()
        metrics.in_flight.inc()
        metrics.in_flight.dec()
        route = "/products/{product_id}/".rstrip("/") or "/"
        metrics.request_answered("GET", route, 200, time.perf_counter() - started)

    return min(timeit.repeat(one, number=N, repeat=REPEATS)) / N


def _read_wrapper(metrics: Metrics) -> float:
    stub = _Stub()
    observed = ObservedDatabase(stub, metrics)  # type: ignore[arg-type]

    async def loop(database: object) -> float:
        started = time.perf_counter()
        for _ in range(N):
            async with database.read():  # type: ignore[attr-defined]
                pass
        return time.perf_counter() - started

    def best(database: object) -> float:
        return min(asyncio.run(loop(database)) for _ in range(REPEATS)) / N

    return best(observed) - best(stub)


def main() -> None:
    metrics = Metrics(multiprocess_dir=None)
    middleware = _middleware_work(metrics)
    wrapper = _read_wrapper(metrics)
    print(f"metrics middleware work per request: {middleware * 1e6:.2f} µs")
    print(f"observed read() over a bare read(): {wrapper * 1e6:.2f} µs")
    print(f"total per GET: {(middleware + wrapper) * 1e6:.2f} µs")


if __name__ == "__main__":
    main()
