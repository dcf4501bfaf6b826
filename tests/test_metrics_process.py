"""GET /metrics from real processes: several workers in one scrape, and a real Prometheus.

The Prometheus test runs Debian's `prometheus` (`apt-get install -y prometheus`; `.ci/run`
installs it) against `run.py`, and asks Prometheus's HTTP API for the request counter.
Without the binary it fails in CI (CI=true) and under REQUIRE_PROMETHEUS_TESTS=1; elsewhere
(a newcomer's `make test`) it is reported as skipped, with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers_process import (
    Req,
    Server,
    alive,
    call,
    children,
    free_port,
    parallel,
    requests_to,
    scrape,
    started,
    wait_until_serving,
)
from tests.test_workers import wait_until_every_worker_serves, worker_pids

pytestmark = pytest.mark.process

PROMETHEUS = "/usr/bin/prometheus"
ROUTE = "/products/{product_id}"
WAIT_SECONDS = 30


def pids_of(samples: dict[str, list[tuple[dict[str, str], float]]]) -> set[int]:
    return {int(labels["pid"]) for labels, _ in samples["process_resident_memory_bytes"]}


def test_one_scrape_sees_every_worker_and_a_dead_workers_counts(tmp_path: Path) -> None:
    """run.py --workers 2: one private metrics folder, merged at each scrape, gone at stop.

    A folder left by a master that was killed (its pid no longer runs) is removed at start;
    one whose master still runs (another run.py --workers) is left alone.
    """
    dead = _pid_of_a_finished_process()
    stale = tmp_path / f"products-metrics-{dead}-abc123"
    stale.mkdir(mode=0o700)
    (stale / "counter_4711.db").write_bytes(b"stale")
    running = tmp_path / f"products-metrics-{os.getpid()}-def456"
    running.mkdir(mode=0o700)
    with started(tmp_path, "--workers", "2", TMPDIR=str(tmp_path)) as server:
        wait_until_every_worker_serves(server, 2)
        assert not stale.exists()
        assert running.exists()
        (folder,) = set(tmp_path.glob("products-metrics-*")) - {running}
        assert folder.name.startswith(f"products-metrics-{server.process.pid}-")
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        sent = 0
        # Every request is a new connection, which the kernel hands to either worker;
        # send until both workers have answered some (their log files say).
        while not _both_workers_answered(server) and sent < 400:
            replies = parallel(server, [Req("GET", f"/products/{n}") for n in range(40)])
            assert {reply.status for reply in replies} == {404}
            sent += len(replies)
        assert _both_workers_answered(server), "the kernel gave every connection to one worker"
        pids = set(worker_pids(server))
        for _ in range(6):  # whichever worker answers the scrape, it sees both
            samples = scrape(server)
            assert requests_to(samples, ROUTE) == sent
            assert pids_of(samples) == pids

        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        replaced = _replaced(server, victim)
        samples = scrape(server)
        assert requests_to(samples, ROUTE) == sent  # what the dead worker counted stays
        assert pids_of(samples) == replaced  # its process metrics are gone
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0, server.stderr()
    assert not folder.exists()


def _pid_of_a_finished_process() -> int:
    """A pid that no process has now (a child that has exited and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    assert not alive(child.pid)
    return child.pid


def _both_workers_answered(server: Server) -> bool:
    logs = [server.log_file.with_name(f"app.{n}.log") for n in (1, 2)]
    return all("GET /products/" in log.read_text("utf-8") for log in logs if log.exists())


def _replaced(server: Server, dead: int) -> set[int]:
    """The workers once gunicorn has replaced `dead` and the new one serves."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        pids = set(children(server.process.pid))
        if len(pids) == 2 and dead not in pids and not alive(dead):
            wait_until_every_worker_serves(server, 2)
            with contextlib.suppress(AssertionError):
                if pids_of(scrape(server)) == pids:
                    return pids
        time.sleep(0.1)
    pytest.fail(f"worker {dead} was not replaced:\n{server.stderr()}")


def _require_prometheus() -> None:
    if shutil.which(PROMETHEUS) is not None:
        return
    reason = (
        f"{PROMETHEUS} not found: this test needs Debian's prometheus "
        "(`apt-get update && apt-get install -y prometheus`, as .ci/run does)"
    )
    if os.environ.get("CI") == "true" or os.environ.get("REQUIRE_PROMETHEUS_TESTS") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def prometheus_scraping(tmp_path: Path, target: Server) -> Iterator[str]:
    """Prometheus scraping `target` every second; yields its base URL."""
    _require_prometheus()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: products\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target.port}']\n",
        encoding="utf-8",
    )
    port = free_port()
    with (tmp_path / "prometheus.txt").open("wb") as output:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    """The result vector of an instant query, or [] while Prometheus is not up yet."""
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (127.0.0.1)
            answer = json.loads(response.read())
    except OSError:
        return []
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_a_real_prometheus_scrapes_the_request_counter(tmp_path: Path) -> None:
    with started(tmp_path) as server:
        wait_until_serving(server)
        for product_id in (1, 22, 333):
            assert call(server, "GET", f"/products/{product_id}")[0] == 404
        with prometheus_scraping(tmp_path, server) as prometheus:
            promql = f'http_requests_total{{job="products",route="{ROUTE}",status="404"}}'
            deadline = time.monotonic() + WAIT_SECONDS
            result = query(prometheus, promql)
            while not result and time.monotonic() < deadline:
                time.sleep(0.25)
                result = query(prometheus, promql)
            log = (tmp_path / "prometheus.txt").read_text("utf-8", errors="replace")
            assert result, f"Prometheus has no such series after {WAIT_SECONDS} s:\n{log}"
            (series,) = result
            assert series["metric"]["method"] == "GET"
            assert series["metric"]["instance"] == f"127.0.0.1:{server.port}"
            assert float(series["value"][1]) == 3
            up = query(prometheus, 'up{job="products"}')
            assert [float(each["value"][1]) for each in up] == [1]
