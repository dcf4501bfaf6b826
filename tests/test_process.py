"""`python run.py` as a real process: migrate, serve, log, stop on SIGTERM, refuse bad starts."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.db import migrations
from tests import engines
from tests.helpers_process import (
    REPO_ROOT,
    SECRET_KEY,
    Server,
    call,
    call_json,
    database_of,
    database_untouched,
    environment,
    free_port,
    login,
    run_to_exit,
    serving,
    started,
    wait_for_logins_in_flight,
    wait_until_serving,
)

pytestmark = pytest.mark.process

PASSWORD = "process-password-1"


def test_serves_logs_and_stops_on_sigterm(tmp_path: Path) -> None:
    with started(tmp_path) as server:
        wait_until_serving(server)

        status, headers, body = call(server, "POST", "/products/", {"name": "Tea", "price": 4.5})
        assert status == 201, body
        created = json.loads(body)
        assert headers["Location"] == f"/products/{created['id']}"
        assert re.fullmatch(r"\d+\.\d{2}", headers["X-Process-Time-ms"])

        status, _, body = call(server, "GET", f"/products/{created['id']}")
        assert status == 200
        assert json.loads(body)["name"] == "Tea"
        assert json.loads(body)["price"] == 4.5

        status, headers, body = call(server, "GET", "/products/999999")
        assert status == 404
        assert headers["Content-Type"].startswith("application/problem+json")

        status, _, body = call(server, "GET", "/health/ready")
        assert status == 200

        server.process.send_signal(signal.SIGTERM)
        try:
            assert server.process.wait(timeout=5) == 0, server.stderr()
        except subprocess.TimeoutExpired:
            pytest.fail(f"run.py did not stop within 5 s of SIGTERM:\n{server.stderr()}")

        lines = server.log_file.read_text(encoding="utf-8").splitlines()
        output = server.stderr()

    request_lines = [line for line in lines if " выполнялся " in line]
    post = (
        r"^.* \| INFO +\| POST /products/ выполнялся \d+\.\d\d мс"
        r" \| status=201 request_id=proc-post client=127\.0\.0\.1$"
    )
    assert [line for line in request_lines if re.match(post, line)], lines
    missing = (
        r"^.* \| INFO +\| GET /products/999999 выполнялся \d+\.\d\d мс"
        r" \| status=404 request_id=proc-get client=127\.0\.0\.1$"
    )
    assert len([line for line in request_lines if re.match(missing, line)]) == 1, lines
    # exactly one line per request: the polls of /health plus the 4 calls above
    assert len([line for line in request_lines if "/health " in line]) >= 1
    assert len([line for line in request_lines if "/products/" in line]) == 3
    # no aiohttp access-log lines anywhere, in the file or on stderr
    for text in ("\n".join(lines), output):
        assert 'HTTP/1.1"' not in text
        assert not re.search(r'"(GET|POST) /\S* HTTP', text)
    assert "Traceback" not in output
    assert SECRET_KEY not in output and SECRET_KEY not in "\n".join(lines)
    # migrations were applied at start
    known = migrations.known_migration_ids(engines.ENGINE)
    assert migrations.pending_sync(database_of(tmp_path), known) == []


@pytest.mark.parametrize(("chosen", "uvloop_loaded"), [(None, True), ("asyncio", False)])
def test_serves_on_the_chosen_event_loop(
    tmp_path: Path, chosen: str | None, uvloop_loaded: bool
) -> None:
    with started(tmp_path, **({} if chosen is None else {"EVENT_LOOP": chosen})) as server:
        wait_until_serving(server)
        status, _, body = call(server, "POST", "/products/", {"name": "Tea", "price": 4.5})
        assert status == 201, body
        maps = Path(f"/proc/{server.process.pid}/maps").read_text()
        assert ("uvloop" in maps) is uvloop_loaded
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=10) == 0, server.stderr()


def test_no_migrate_serves_an_already_migrated_database(tmp_path: Path) -> None:
    migrations.apply_pending(database_of(tmp_path))
    with started(tmp_path, "--no-migrate") as server:
        wait_until_serving(server)
        status, _, _ = call(server, "GET", "/health/ready")
        assert status == 200


def test_no_migrate_on_a_fresh_database_refuses_to_serve(tmp_path: Path) -> None:
    result = run_to_exit(tmp_path, "--no-migrate")
    assert result.returncode != 0
    message = result.stderr.lower()
    assert "pending" in message and "migration" in message, result.stderr
    for migration_id in migrations.known_migration_ids(engines.ENGINE):
        assert migration_id in result.stderr
    # The fix it names migrates this database; `yoyo apply` would migrate yoyo.ini's.
    assert "`python run.py migrate` (`make migrate`)" in result.stderr, result.stderr
    assert "yoyo" not in result.stderr
    assert "Traceback" not in result.stderr
    assert "running on" not in (result.stdout + result.stderr).lower()
    assert database_untouched(tmp_path)  # refused without creating a database


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PORT", "abc"), ("LOG_LEVEL", "LOUD"), ("LOG_JSON", "maybe")],
)
def test_bad_setting_stops_the_start_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    # --port would override PORT: leave it out when PORT itself is under test.
    args = [] if variable == "PORT" else ["--port", str(free_port())]
    result = subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=REPO_ROOT,
        env=environment(tmp_path, **{variable: value}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert variable in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert database_untouched(tmp_path)  # stopped before touching anything


def run_py(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python run.py ARGS` to its exit (no --port added), its output captured."""
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=REPO_ROOT,
        env=environment(tmp_path, **env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("port", ["99999", "65536", "-5", "0", "abc", "80.5"])
@pytest.mark.parametrize("spelling", ["--port {}", "--port={}"])
def test_port_is_validated_as_port_is(tmp_path: Path, port: str, spelling: str) -> None:
    """Not a random port (99999), not a traceback (-5), not PORT's value instead (0)."""
    result = run_py(tmp_path, *spelling.format(port).split(), PORT=str(free_port()))
    assert result.returncode == 2, result.stderr
    assert "argument --port: expected an integer" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert database_untouched(tmp_path)  # refused before anything was touched


@pytest.mark.parametrize("workers", ["abc", "0", "-1", "1.5"])
def test_workers_is_validated_in_ports_words(tmp_path: Path, workers: str) -> None:
    """Not argparse's "invalid _positive value: 'abc'"."""
    result = run_py(tmp_path, "--workers", workers, PORT=str(free_port()))
    assert result.returncode == 2, result.stderr
    assert "argument --workers: expected an integer, 1 or more" in result.stderr, result.stderr
    assert "_positive" not in result.stderr and "Traceback" not in result.stderr
    assert database_untouched(tmp_path)  # refused before anything was touched


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one process", "workers"])
def test_a_port_in_use_is_one_line_naming_it_and_exit_1(tmp_path: Path, workers: list[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_py(tmp_path, "--host", "127.0.0.1", "--port", str(port), *workers)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("applied ")]
    assert lines == [f"error: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_short_secret_key_stops_the_start_without_echoing_it(tmp_path: Path) -> None:
    key = "too-short-key-abc123"
    result = run_to_exit(tmp_path, SECRET_KEY=key)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
    assert key not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def login_status(server: Server, username: str) -> int | str:
    """The status of a login, or the name of what broke the exchange."""
    try:
        return login(server, username, PASSWORD)[0]
    except (OSError, http.client.HTTPException) as error:
        return type(error).__name__


def test_a_second_sigterm_during_the_graceful_stop_is_ignored(tmp_path: Path) -> None:
    # systemd's default KillMode=control-group sends SIGTERM to every process of the unit
    # (a --workers parent passes its own on as well), and impatient people press Ctrl-C
    # twice: the repeat must neither cut the stop short nor change the exit code.
    with serving(tmp_path, PASSWORD_HASH_THREADS="1") as server:
        call_json(server, "POST", "/users/signup", {"username": "slow", "password": PASSWORD})
        # One argon2 thread: 12 logins queue for about a second, in flight at the signals.
        with ThreadPoolExecutor(12) as pool:
            logins = [pool.submit(login_status, server, "slow") for _ in range(12)]
            # All 12 reached the app (a login still connecting at the signal is refused).
            assert wait_for_logins_in_flight(server, 12) > 0, "none left to finish: no test"
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.1)
            server.process.send_signal(signal.SIGTERM)
            server.process.send_signal(signal.SIGINT)
            statuses = [future.result() for future in logins]
        try:
            code = server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run.py hung after a second SIGTERM:\n{server.stderr()}")
        assert code == 0, server.stderr()
        assert statuses == [200] * 12, statuses
        output = server.stderr()
    assert "Traceback" not in output
    assert "SIGTERM again while stopping: ignored" in output, output


@pytest.mark.parametrize("command", [[], ["create-superuser", "--password", "long-enough-1"]])
def test_an_unreachable_postgresql_stops_the_start_clearly(
    tmp_path: Path, command: list[str]
) -> None:
    url = "postgresql://app:do-not-print-me@127.0.0.1:1/shop"  # nothing listens on port 1
    result = subprocess.run(
        [sys.executable, "run.py", *command],
        cwd=REPO_ROOT,
        env={**environment(tmp_path), "DATABASE_URL": url, "DATABASE_PATH": ""},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "error:" in result.stderr and "127.0.0.1" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert "do-not-print-me" not in result.stdout + result.stderr
