"""`python run.py` as a real process: migrate, serve, log, stop on SIGTERM, refuse bad starts."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from service import migrations
from tests.log_hygiene import remember

pytestmark = pytest.mark.process

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = remember("process-test-secret-key-0123456789abcdef", "SECRET_KEY")  # 40 chars
START_TIMEOUT = 15.0
SETTING_NAMES = {
    *("HOST", "PORT", "DATABASE_PATH", "DATABASE_SYNCHRONOUS", "DATABASE_READERS"),
    *("LOG_FILE", "LOG_LEVEL", "LOG_JSON", "LOG_STDERR", "MAX_BODY_BYTES"),
    *("REQUEST_TIMEOUT_SECONDS", "SECRET_KEY", "ACCESS_TOKEN_EXPIRE_MINUTES", "OPEN_SIGNUP"),
    *("PRODUCT_WRITE_ACCESS", "LOGIN_MAX_FAILURES", "LOGIN_FAILURE_WINDOW_SECONDS"),
    *("PASSWORD_HASH_THREADS", "ADMIN_PASSWORD", "PYTHONASYNCIODEBUG"),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    stderr_path: Path
    log_file: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")


def environment(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    env.update(
        DATABASE_PATH=str(tmp_path / "data" / "app.db"),
        LOG_FILE=str(tmp_path / "logs" / "app.log"),
        SECRET_KEY=SECRET_KEY,
        LOG_STDERR="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


@contextlib.contextmanager
def started(tmp_path: Path, *args: str, **env: str) -> Iterator[Server]:
    """run.py in a subprocess, killed on the way out whatever happens."""
    port = free_port()
    stderr_path = tmp_path / f"stderr-{port}.txt"
    environ = environment(tmp_path, **env)
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "run.py", "--port", str(port), *args],
            cwd=REPO_ROOT,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Server(process, port, stderr_path, Path(environ["LOG_FILE"]))
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def wait_until_serving(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"run.py exited with {server.process.returncode}:\n{server.stderr()}")
        try:
            health = f"{server.base}/health"
            with urllib.request.urlopen(health, timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    pytest.fail(f"run.py did not answer /health in {START_TIMEOUT} s:\n{server.stderr()}")


def call(
    server: Server, method: str, path: str, body: object | None = None
) -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else json.dumps(body).encode()
    url = f"{server.base}{path}"  # always http://127.0.0.1
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    if data is not None:
        request.add_header("Content-Type", "application/json")
    request.add_header("X-Request-ID", f"proc-{method.lower()}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def run_to_exit(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "run.py", "--port", str(free_port()), *args],
        cwd=REPO_ROOT,
        env=environment(tmp_path, **env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


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
    database = tmp_path / "data" / "app.db"
    assert migrations.pending_sync(database, migrations.known_migration_ids()) == []


def test_no_migrate_serves_an_already_migrated_database(tmp_path: Path) -> None:
    migrations.apply_pending(tmp_path / "data" / "app.db")
    with started(tmp_path, "--no-migrate") as server:
        wait_until_serving(server)
        status, _, _ = call(server, "GET", "/health/ready")
        assert status == 200


def test_no_migrate_on_a_fresh_database_refuses_to_serve(tmp_path: Path) -> None:
    result = run_to_exit(tmp_path, "--no-migrate")
    assert result.returncode != 0
    message = result.stderr.lower()
    assert "pending" in message and "migration" in message, result.stderr
    for migration_id in migrations.known_migration_ids():
        assert migration_id in result.stderr
    assert "Traceback" not in result.stderr
    assert "running on" not in (result.stdout + result.stderr).lower()
    assert not (tmp_path / "data" / "app.db").exists()  # refused without creating a database


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
    assert not (tmp_path / "data" / "app.db").exists()  # stopped before touching anything


def test_short_secret_key_stops_the_start_without_echoing_it(tmp_path: Path) -> None:
    key = "too-short-key-abc123"
    result = run_to_exit(tmp_path, SECRET_KEY=key)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
    assert key not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
