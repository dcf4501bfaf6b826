"""`run.py --workers N`: several processes on one port and one database, migrated once."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers_process import (
    REPO_ROOT,
    Server,
    call,
    environment,
    free_port,
    started,
    wait_until_serving,
)

pytestmark = pytest.mark.process

PASSWORD = "workers-password-1"


def worker_pids(server: Server) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = re.search(r"with \d+ workers \(pids ([\d, ]+)\)", server.stderr())
        if found:
            return [int(pid) for pid in found.group(1).split(", ")]
        time.sleep(0.05)
    pytest.fail(f"no worker pids announced:\n{server.stderr()}")


def wait_until_every_worker_serves(server: Server, workers: int) -> None:
    """Each worker logs "Running on" to its own file once it listens."""
    wait_until_serving(server)
    deadline = time.monotonic() + 15
    logs = [server.log_file.with_name(f"app.{n}.log") for n in range(1, workers + 1)]
    while not all(log.exists() and "Running on" in log.read_text("utf-8") for log in logs):
        if time.monotonic() > deadline:
            pytest.fail(f"not every worker started:\n{server.stderr()}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def wait_gone(pids: list[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            pytest.fail(f"workers still running: {[pid for pid in pids if alive(pid)]}")
        time.sleep(0.05)


def login(server: Server, username: str) -> str:
    form = urllib.parse.urlencode({"username": username, "password": PASSWORD}).encode()
    request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1 only)
        f"{server.base}/login/access-token", data=form, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
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
    assert len(applied) == len(set(applied)) == 3
    assert (tmp_path / "data" / "app.db.secret_key").stat().st_mode & 0o777 == 0o600


def test_sigterm_stops_every_worker_and_exits_0(tmp_path: Path) -> None:
    with started(tmp_path, "--workers", "2") as server:
        wait_until_every_worker_serves(server, 2)
        pids = worker_pids(server)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=15) == 0, server.stderr()
        wait_gone(pids, 5)
        assert "Traceback" not in server.stderr()


def test_a_dead_worker_stops_the_others_and_the_exit_code_says_so(tmp_path: Path) -> None:
    with started(tmp_path, "--workers", "2") as server:
        wait_until_every_worker_serves(server, 2)
        first, second = worker_pids(server)
        os.kill(first, signal.SIGKILL)
        try:
            assert server.process.wait(timeout=15) == 1
        except subprocess.TimeoutExpired:
            pytest.fail(f"the parent kept running with a dead worker:\n{server.stderr()}")
        wait_gone([second], 5)
        assert "a worker exited" in server.stderr()


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
        assert "--workers: must be 1 or more" in server.stderr()


# run.py --workers, with each worker's start stretched to 2 s (after its fork, before the
# supervisor has it in its list): wide enough for a test to send a signal into.
SLOW_START = """
import sys, time
import run
from service import workers

start = workers._start_worker

def slow_start(*args):
    process = start(*args)
    print(f"started worker {process.pid}", file=sys.stderr, flush=True)
    time.sleep(2)
    return process

workers._start_worker = slow_start
sys.exit(run.main(sys.argv[1:]))
"""


def test_a_stop_while_workers_are_starting_stops_the_started_and_starts_no_more(
    tmp_path: Path,
) -> None:
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("wb") as stderr:
        parent = subprocess.Popen(
            [sys.executable, "-c", SLOW_START, "--port", str(free_port()), "--workers", "3"],
            cwd=REPO_ROOT,
            env=environment(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while "started worker" not in stderr_path.read_text():
            assert time.monotonic() < deadline, stderr_path.read_text()
            time.sleep(0.02)
        parent.send_signal(signal.SIGTERM)  # while the first worker's start is not done
        try:
            code = parent.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the parent did not stop:\n{stderr_path.read_text()}")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    output = stderr_path.read_text()
    started_pids = [int(pid) for pid in re.findall(r"started worker (\d+)", output)]
    assert code == 0, output
    assert len(started_pids) == 1, output  # no worker started after the signal
    wait_gone(started_pids, 5)  # and the one started before it was stopped
    assert not (tmp_path / "logs" / "app.2.log").exists()


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


def test_sigterm_to_every_process_at_once_then_again_stops_gracefully_with_0(
    tmp_path: Path,
) -> None:
    # What systemd's default KillMode=control-group does: SIGTERM to the parent and to every
    # worker at once (the parent passes its own on, so each worker gets two), and a stop
    # repeated by an impatient operator. Logins are in flight in the workers all the while.
    with started(tmp_path, "--workers", "2", PASSWORD_HASH_THREADS="1") as server:
        wait_until_every_worker_serves(server, 2)
        pids = worker_pids(server)
        status, _, body = call(
            server, "POST", "/users/signup", {"username": "cgroup", "password": PASSWORD}
        )
        assert status == 201, body
        try:
            with ThreadPoolExecutor(16) as pool:
                logins = [pool.submit(login_status, server, "cgroup") for _ in range(16)]
                time.sleep(0.3)
                for pid in [server.process.pid, *pids]:
                    os.kill(pid, signal.SIGTERM)
                time.sleep(0.1)
                server.process.send_signal(signal.SIGTERM)
                server.process.send_signal(signal.SIGINT)
                statuses = [future.result() for future in logins]
            try:
                code = server.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the parent did not stop:\n{server.stderr()}")
            wait_gone(pids, 5)
        finally:  # a worker hung in its cleanup would outlive its parent
            for pid in pids:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        output = server.stderr()
    assert code == 0, output
    assert statuses == [200] * 16, statuses  # requests in flight finished
    logs = [server.log_file.with_name(f"app.{n}.log").read_text("utf-8") for n in (1, 2)]
    for log in logs:
        assert "SIGTERM: stopping gracefully" in log, log
        assert "Traceback" not in log
    assert "Traceback" not in output


# A worker whose parent dies between the fork and the worker's prctl(PR_SET_PDEATHSIG): the
# death signal never comes, so only a check after prctl keeps it from running on as an
# orphan. The supervisor's prctl is stretched to 1 s so that the test can kill it there.
ORPHAN = """
import ctypes, os, sys, time
from pathlib import Path
from service import workers
from service.settings import Settings

real_cdll = ctypes.CDLL

class SlowLibc:
    def __init__(self, *args, **kwargs):
        self._libc = real_cdll(*args, **kwargs)

    def prctl(self, *args):
        Path(sys.argv[1]).write_text(str(os.getpid()))  # in the worker, before its exec
        time.sleep(1)  # the parent is killed meanwhile
        return self._libc.prctl(*args)

ctypes.CDLL = SlowLibc
workers.supervise(Settings(), 1, Path(sys.argv[2]))
"""


def test_a_worker_whose_parent_died_before_its_prctl_exits_at_once(tmp_path: Path) -> None:
    pid_file, worker = tmp_path / "worker.pid", tmp_path / "worker.py"
    worker.write_text("import time\ntime.sleep(60)\n")  # what an orphaned worker would do
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN, str(pid_file), str(worker)],
        cwd=REPO_ROOT,
        env=environment(tmp_path),
    )
    try:
        deadline = time.monotonic() + 10
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.02)
        child = int(pid_file.read_text())
    finally:
        parent.kill()
        parent.wait()
    try:
        wait_gone([child], 5)
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
