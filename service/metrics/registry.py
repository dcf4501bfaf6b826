"""The service's metrics, one set per app, exposed through prometheus-client.

One process (`run.py`, the tests): the metrics live in memory, in a registry of the app's
own beside the process, platform and garbage-collector collectors.

Several processes (`run.py --workers N`): a scrape reaches one worker, yet must see them
all. prometheus-client's multiprocess mode keeps every value in a memory-mapped file per
process in PROMETHEUS_MULTIPROC_DIR, and the scraped worker merges the files. Its process
collector sees only the process that scrapes, so `_WorkersCollector` reads each live
worker's figures from /proc, labelled by pid. service/supervisor.py makes the directory.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    values,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from service.db import observed

# Waits for a connection or a hash thread are often well under a millisecond.
WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own name
# One sample per live worker, labelled by pid: how a scrape learns which workers to read.
WORKER_GAUGE = "worker_start_time_seconds"


class LoginOutcome(enum.StrEnum):
    """What a login attempt earned, as counted in login_attempts_total."""

    SUCCESS = "success"
    FAILURE = "failure"  # unknown user or wrong password
    THROTTLED = "throttled"  # 429: too many failures
    INACTIVE = "inactive"  # the right password of a deactivated user
    UNVERIFIED = "unverified"  # the right password, REQUIRE_VERIFIED_EMAIL, address unverified
    SECOND_FACTOR = "second_factor"  # the right password of a user with TOTP on: a code next


class Metrics:
    """Every metric the service records, and the registry a scrape reads."""

    def __init__(self, *, multiprocess_dir: Path | None) -> None:
        if multiprocess_dir is not None:
            _write_to_files(multiprocess_dir)
        # In multiprocess mode the metrics are written to files, not registered anywhere:
        # the scrape merges the files.
        own = CollectorRegistry() if multiprocess_dir is None else None
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=own,
        )
        self.request_seconds = Histogram(
            "http_request_duration_seconds",
            "Time from a request's arrival in the app to its answer, by route template",
            ["method", "route"],
            registry=own,
        )
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "Requests being handled now",
            registry=own,
            multiprocess_mode="livesum",
        )
        # In one process the gauge reads a plain count when scraped: two locked updates
        # per request were a tenth of what the metrics cost a GET (bench/README.md).
        self._in_flight_now = 0
        self._in_flight_in_files = multiprocess_dir is not None
        if not self._in_flight_in_files:
            self.in_flight.set_function(lambda: self._in_flight_now)
        self.logins = Counter(
            "login_attempts",
            "Login attempts (POST /login/access-token and POST /login/mfa) by outcome",
            ["outcome"],
            registry=own,
        )
        self.hash_wait = Histogram(
            "password_hash_queue_wait_seconds",
            "Time a password hash or verification waited for a hash thread",
            registry=own,
            buckets=WAIT_BUCKETS,
        )
        self.hashes_in_flight = Gauge(
            "password_hashes_in_flight",
            "Password hashes or verifications running now",
            registry=own,
            multiprocess_mode="livesum",
        )
        self.connection_wait = Histogram(
            "database_connection_wait_seconds",
            "Time until a read or a unit of work had its connection, its transaction begun",
            ["kind"],
            registry=own,
            buckets=WAIT_BUCKETS,
        )
        self.units_of_work = Counter(
            "database_units_of_work",
            "Units of work (transactions) by outcome",
            ["outcome"],
            registry=own,
        )
        # Every series of a known label value exists from the start, at 0; and the
        # children are looked up once: labels() costs more than the increment itself.
        self._logins = {outcome: self.logins.labels(outcome.value) for outcome in LoginOutcome}
        self._units = {ended: self.units_of_work.labels(ended) for ended in observed.OUTCOMES}
        self._waits = {kind: self.connection_wait.labels(kind) for kind in observed.KINDS}
        self._counted: dict[tuple[str, str, int], Counter] = {}
        self._timed: dict[tuple[str, str], Histogram] = {}
        self.registry = own or CollectorRegistry()
        if multiprocess_dir is None:
            ProcessCollector(registry=self.registry)
            self.registry.register(PLATFORM_COLLECTOR)
            self.registry.register(GC_COLLECTOR)
        else:
            started = Gauge(WORKER_GAUGE, "", registry=None, multiprocess_mode="liveall")
            started.set(time.time())
            self.registry.register(_WorkersCollector(multiprocess_dir))

    def request_started(self) -> None:
        if self._in_flight_in_files:
            self.in_flight.inc()
        else:
            self._in_flight_now += 1

    def request_answered(self, method: str, route: str, status: int, seconds: float) -> None:
        """One request answered (method and route from a bounded set: see web.py)."""
        if self._in_flight_in_files:
            self.in_flight.dec()
        else:
            self._in_flight_now -= 1
        counter = self._counted.get((method, route, status))
        if counter is None:
            counter = self.requests.labels(method, route, str(status))
            self._counted[method, route, status] = counter
        counter.inc()
        histogram = self._timed.get((method, route))
        if histogram is None:
            histogram = self.request_seconds.labels(method, route)
            self._timed[method, route] = histogram
        histogram.observe(seconds)

    def login_attempted(self, outcome: LoginOutcome) -> None:
        self._logins[outcome].inc()

    # What service/db/observed.py and service/passwords.py report.

    def connection_waited(self, kind: str, seconds: float) -> None:
        self._waits[kind].observe(seconds)

    def unit_of_work_ended(self, outcome: str) -> None:
        self._units[outcome].inc()

    def hash_started(self, waited_seconds: float) -> None:
        self.hash_wait.observe(waited_seconds)
        self.hashes_in_flight.inc()

    def hash_finished(self) -> None:
        self.hashes_in_flight.dec()


def _write_to_files(folder: Path) -> None:
    """Make the metrics created from now on in this process write their files to `folder`.

    prometheus-client picks memory or files once, when it is imported; run.py imports it
    before it knows whether there will be workers, and the workers inherit that choice.
    Its files go wherever PROMETHEUS_MULTIPROC_DIR says when each metric is created.
    """
    os.environ[MULTIPROCESS_VARIABLE] = str(folder)
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


class _WorkersCollector(Collector):
    """Every worker's metrics from the files, and each live worker's process metrics."""

    def __init__(self, directory: Path) -> None:
        self._files = MultiProcessCollector(None, path=str(directory))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        pids: list[str] = []
        for family in self._files.collect():  # type: ignore[no-untyped-call]
            if family.name == WORKER_GAUGE:
                pids = sorted(sample.labels["pid"] for sample in family.samples)
                continue
            yield family
        yield from _process_families(pids)


def _process_families(pids: list[str]) -> Iterator[Metric]:
    """The process collector's families for each pid (that is still alive), labelled by pid."""
    merged: dict[str, Metric] = {}
    for pid in pids:
        collector = ProcessCollector(pid=lambda pid=pid: pid, registry=None)  # type: ignore[misc]
        for family in collector.collect():
            into = merged.setdefault(
                family.name, Metric(family.name, family.documentation, family.type)
            )
            for sample in family.samples:
                into.add_sample(sample.name, {**sample.labels, "pid": pid}, sample.value)
    yield from merged.values()
