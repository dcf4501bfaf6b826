"""`run.py --workers N`: gunicorn's workers on one port and one database, migrated once."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.db import migrations
from service.db.dialect import Dialect
from tests.helpers_process import (
    Server,
    alive,
    call,
    children,
    started,
    wait_until_serving,
)

SQLITE_MIGRATIONS = migrations.known_migration_ids(Dialect.SQLITE)

pytestmark = pytest.mark.process

PASSWORD = "workers-password-1"


def worker_pids(server: Server, workers: int = 2) -> list[int]:
    """The pids of gunicorn's workers: the children of run.py, which is gunicorn's master."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = children(server.process.pid)
        if len(pids) == workers:
            return pids
        time.sleep(0.05)
    pytest.fail(f"not {workers} workers:\n{server.stderr()}")


def wait_until_every_worker_serves(server: Server, workers: int) -> None:
    """Each worker logs "Running on" to its own file once it listens."""
    wait_until_serving(server)
    deadline = time.monotonic() + 15
    logs = [server.log_file.with_name(f"app.{n}.log") for n in range(1, workers + 1)]
    while not all(log.exists() and "Running on" in log.read_text("utf-8") for log in logs):
        if time.monotonic() > deadline:
            pytest.fail(f"not every worker started:\n{server.stderr()}")
        time.sleep(0.05)


def wait_gone(pids: list[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            pytest.fail(f"workers still running: {[pid for pid in pids if alive(pid)]}")
        time.sleep(0.05)


def login(server: Server, username: str) -> str:
    """Log in, waiting as long as a graceful stop may take to drain it (30 s)."""
    form = urllib.parse.urlencode({"username": username, "password": PASSWORD}).encode()
    request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1 only)
        f"{server.base}/login/access-token", data=form, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return str(json.loads(response.read())["access_token"])


def me(server: Server, token: str) -> int:
    request = urllib.request.Request(f"{server.base}/users/me")  # noqa: S310
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.sqlite_only("the generated key file; PostgreSQL requires SECRET_KEY")
def test_two_workers_share_the_port_the_database_and_the_key(tmp_path: Path) -> None:
    # No SECRET_KEY: the parent makes the key file once; both workers must sign alike.
    with started(tmp_path, "--workers", "2", SECRET_KEY="") as server:
        wait_until_every_worker_serves(server, 2)
        pids = worker_pids(server)
        assert len(pids) == 2
        status, _, body = call(
            server, "POST", "/users/signup", {"username": "worker", "password": PASSWORD}
        )
        assert status == 201, body
        token = login(server, "worker")
        # Every call is a new connection, which the kernel hands to either worker.
        assert [me(server, token) for _ in range(40)] == [200] * 40
        created = []
        for i in range(20):
            status, _, body = call(server, "POST", "/products/", {"name": f"p{i}", "price": 1})
            assert status == 201, body
            created.append(json.loads(body)["id"])
        assert len(set(created)) == 20
        for product_id in created:
            assert call(server, "GET", f"/products/{product_id}")[0] == 200
        output = server.stderr()

    logs = {
        path.name: path.read_text(encoding="utf-8") for path in server.log_file.parent.glob("*.log")
    }
    assert set(logs) == {"app.1.log", "app.2.log"}, logs.keys()
    for name, text in logs.items():  # both workers answered some of the 80-odd requests
        assert " выполнялся " in text, name
    # Migrated once, by the parent, before the workers started.
    assert output.count("applied migrations: 0001") == 1, output
    with sqlite3.connect(tmp_path / "data" / "app.db") as conn:
        applied = [row[0] for row in conn.execute("SELECT migration_id FROM _yoyo_migration")]
    assert len(applied) == len(set(applied)) == len(SQLITE_MIGRATIONS)
    assert (tmp_path / "data" / "app.db.secret_key").stat().st_mode & 0o777 == 0o600


def test_sigterm_stops_every_worker_and_exits_0(tmp_path: Path) -> None:
    with started(tmp_path, "--workers", "2") as server:
        wait_until_every_worker_serves(server, 2)
        pids = worker_pids(server)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=15) == 0, server.stderr()
        wait_gone(pids, 5)
        assert "Traceback" not in server.stderr()
        # uvloop closes the listener itself at the stop: no worker reports that as an error.
        assert "Error while closing socket" not in server.stderr(), server.stderr()


def slot_of(server: Server, pid: int) -> int:
    """The number of the log file in which worker `pid` announced itself (waits for it)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for path in server.log_file.parent.glob("app.*.log"):
            if f"pid {pid})" in path.read_text("utf-8"):
                return int(path.name.split(".")[1])
        time.sleep(0.05)
    pytest.fail(f"worker {pid} logged nowhere:\n{server.stderr()}")


def test_a_killed_worker_is_replaced_in_its_slot_and_the_service_keeps_answering(
    tmp_path: Path,
) -> None:
    with started(tmp_path, "--workers", "2") as server:
        wait_until_every_worker_serves(server, 2)
        pids = worker_pids(server)
        victim, survivor = pids
        slot = slot_of(server, victim)
        os.kill(victim, signal.SIGKILL)
        wait_gone([victim], 5)
        deadline = time.monotonic() + 15
        while len(replacements := set(children(server.process.pid)) - {survivor}) != 1:
            assert time.monotonic() < deadline, f"no worker replaced {victim}:\n{server.stderr()}"
            time.sleep(0.05)
        (replacement,) = replacements
        assert server.process.poll() is None, server.stderr()
        # Every call is a new connection, which either worker may take.
        assert [call(server, "GET", "/health/ready")[0] for _ in range(30)] == [200] * 30
        assert slot_of(server, replacement) == slot  # the dead worker's log file, reused
        assert [call(server, "GET", "/health/ready")[0] for _ in range(30)] == [200] * 30
        assert survivor in children(server.process.pid)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=15) == 0, server.stderr()
    logs = sorted(path.name for path in server.log_file.parent.glob("*.log"))
    assert logs == ["app.1.log", "app.2.log"], logs


def test_workers_stop_when_the_parent_is_killed(tmp_path: Path) -> None:
    with started(tmp_path, "--workers", "2") as server:
        wait_until_every_worker_serves(server, 2)
        pids = worker_pids(server)
        server.process.kill()
        server.process.wait(timeout=10)
        wait_gone(pids, 15)  # no orphans left holding the port


def test_workers_must_be_a_positive_number(tmp_path: Path) -> None:
    with started(tmp_path, "--workers", "0") as server:
        assert server.process.wait(timeout=10) == 2
        assert "--workers: expected an integer, 1 or more" in server.stderr()


def login_status(server: Server, username: str) -> int | str:
    """The status of a login, or the name of what broke the exchange."""
    try:
        login(server, username)
    except urllib.error.HTTPError as error:
        error.close()
        return error.code
    except (OSError, http.client.HTTPException) as error:
        return type(error).__name__
    return 200


@dataclass
class Stopped:
    """How `run.py --workers 2` ended, stopped while 16 logins were in flight."""

    code: int
    statuses: list[int | str]
    output: str
    logs: list[str]


def stop_during_logins(tmp_path: Path, stop: Callable[[Server, list[int]], None]) -> Stopped:
    """Start two workers, put 16 logins in flight, `stop(server, worker_pids)`, wait for the end."""
    with started(tmp_path, "--workers", "2", PASSWORD_HASH_THREADS="1") as server:
        wait_until_every_worker_serves(server, 2)
        pids = worker_pids(server)
        status, _, body = call(
            server, "POST", "/users/signup", {"username": "drain", "password": PASSWORD}
        )
        assert status == 201, body
        try:
            with ThreadPoolExecutor(16) as pool:
                logins = [pool.submit(login_status, server, "drain") for _ in range(16)]
                time.sleep(0.3)
                stop(server, pids)
                statuses = [future.result() for future in logins]
            try:
                code = server.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the master did not stop:\n{server.stderr()}")
            wait_gone(pids, 5)
        finally:  # a worker hung in its cleanup would outlive its master
            for pid in pids:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        output = server.stderr()
    logs = [server.log_file.with_name(f"app.{n}.log").read_text("utf-8") for n in (1, 2)]
    return Stopped(code, statuses, output, logs)


def test_sigterm_to_every_process_at_once_then_again_stops_gracefully_with_0(
    tmp_path: Path,
) -> None:
    # What systemd's default KillMode=control-group does: SIGTERM to the master and to every
    # worker at once (each worker also gets the master's), and a stop repeated by an
    # impatient operator. Logins are in flight in the workers all the while.
    def control_group(server: Server, pids: list[int]) -> None:
        for pid in [server.process.pid, *pids]:
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.1)
        server.process.send_signal(signal.SIGTERM)
        server.process.send_signal(signal.SIGINT)

    stopped = stop_during_logins(tmp_path, control_group)
    assert stopped.code == 0, stopped.output
    assert stopped.statuses == [200] * 16, stopped.statuses  # requests in flight finished
    for log in stopped.logs:
        assert "SIGTERM: stopping gracefully" in log, log
        assert "Traceback" not in log
    assert "Traceback" not in stopped.output


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_to_the_master_drains_requests_in_flight_and_exits_0(
    tmp_path: Path, stop: signal.Signals
) -> None:
    # SIGTERM from a process manager, SIGINT from Ctrl-C (the terminal sends it to the
    # workers too): logins in flight in the workers finish before they exit.
    stopped = stop_during_logins(tmp_path, lambda server, _: server.process.send_signal(stop))
    assert stopped.code == 0, stopped.output
    assert stopped.statuses == [200] * 16, stopped.statuses
    for log in stopped.logs:
        assert "stopping gracefully" in log, log
    assert "Traceback" not in stopped.output


def test_reuse_port_lets_another_process_listen_on_the_workers_port(tmp_path: Path) -> None:
    # What a second run.py started during a restart does: bind the same port with
    # SO_REUSEPORT while the first still serves.
    with started(tmp_path, "--workers", "2", "--reuse-port") as server:
        wait_until_every_worker_serves(server, 2)
        with socket.socket() as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            other.bind(("127.0.0.1", server.port))
            other.listen()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=15) == 0, server.stderr()
