"""Helpers for tests that run `python run.py` as a real process and talk to it over TCP.

Each test starts its own server on a free port with its own temporary database and log
file (`started`; `gunicorn_started` serves through gunicorn and the project's worker
class instead), waits for it (`wait_until_serving`, `wait_until_ready`), and talks to it
with urllib (`call`, `login_token`), with raw sockets where a client library would refuse
to send (`raw_exchange`, `read_response`), or reads the database file itself (`db_rows`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.db import migrations
from tests import engines
from tests.log_hygiene import remember

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = remember("process-test-secret-key-0123456789abcdef", "SECRET_KEY")  # 40 chars
ADMIN_PASSWORD = "admin-password-for-process-tests"
START_TIMEOUT = 15.0
SETTING_NAMES = {
    *("HOST", "PORT", "DATABASE_PATH", "DATABASE_SYNCHRONOUS", "DATABASE_READERS"),
    *("DATABASE_URL", "DATABASE_POOL_SIZE", "DATABASE_TRANSACTION_POOLER"),
    *("LOG_FILE", "LOG_LEVEL", "LOG_JSON", "LOG_STDERR", "MAX_BODY_BYTES"),
    *("REQUEST_TIMEOUT_SECONDS", "SECRET_KEY", "ACCESS_TOKEN_EXPIRE_MINUTES", "OPEN_SIGNUP"),
    *("PRODUCT_WRITE_ACCESS", "LOGIN_MAX_FAILURES", "LOGIN_FAILURE_WINDOW_SECONDS"),
    *("PASSWORD_HASH_THREADS", "ADMIN_PASSWORD", "PYTHONASYNCIODEBUG", "EVENT_LOOP"),
    *("REFRESH_TOKEN_EXPIRE_DAYS", "SESSION_PURGE_INTERVAL_SECONDS", "SESSION_MAX_AGE_DAYS"),
    *("KEEPALIVE_TIMEOUT_SECONDS", "FIRST_BYTE_TIMEOUT_SECONDS"),
    *("LOGIN_ACCOUNT_MAX_DELAY_SECONDS", "FORWARDED_ALLOW_IPS", "FORWARDED_HEADER"),
    *("PUBLIC_URL", "RESET_TOKEN_EXPIRE_MINUTES", "VERIFY_TOKEN_EXPIRE_MINUTES"),
    *("RECOVERY_MIN_INTERVAL_SECONDS", "REQUIRE_VERIFIED_EMAIL", "MAIL_URL", "MAIL_FROM"),
    *("TOTP_ISSUER", "REQUIRE_TOTP_FOR_SUPERUSERS"),
    *("MAIL_MAX_ATTEMPTS", "MAIL_RETRY_SECONDS", "MAIL_TIMEOUT_SECONDS", "MAIL_POLL_SECONDS"),
    *("MAIL_RETENTION_DAYS", "LOG_ROTATION", "LOG_RETENTION"),
    *("METRICS_ENABLED", "METRICS_ALLOW_IPS", "PROMETHEUS_MULTIPROC_DIR"),
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
    database: Path | str  # the SQLite file, or the PostgreSQL database's URL

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def log(self) -> str:
        if not self.log_file.exists():
            return ""
        return self.log_file.read_text(encoding="utf-8", errors="replace")


def database_of(tmp_path: Path, *, keep: bool = False) -> Path | str:
    """The database run.py gets in `tmp_path`: a SQLite file, or (TEST_ENGINE) a URL."""
    if engines.is_postgres():
        return engines.database_for(tmp_path, keep=keep)
    return tmp_path / "data" / "app.db"


def database_untouched(tmp_path: Path) -> bool:
    """No database was created in `tmp_path` (SQLite), or it holds no table (PostgreSQL)."""
    database = database_of(tmp_path)
    if isinstance(database, Path):
        return not database.exists()
    tables = "SELECT 1 FROM information_schema.tables WHERE table_schema = 'public'"
    return not engines.rows(database, tables)


def environment(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    database = database_of(tmp_path)
    env["DATABASE_URL" if isinstance(database, str) else "DATABASE_PATH"] = str(database)
    env.update(
        LOG_FILE=str(tmp_path / "logs" / "app.log"),
        SECRET_KEY=SECRET_KEY,
        LOG_STDERR="1",
        PYTHONUNBUFFERED="1",
        MAIL_URL=f"file:{tmp_path / 'mail'}",  # never into the repository's ./mail
    )
    env.update(overrides)
    return env


@contextlib.contextmanager
def started(tmp_path: Path, *args: str, **env: str) -> Iterator[Server]:
    """run.py in a subprocess, killed on the way out whatever happens."""
    with _spawned(tmp_path, ["run.py"], args, env, port_flag="--port") as server:
        yield server


GUNICORN = ["-m", "gunicorn", "service.app:app_factory", "--worker-class", "service.worker.Worker"]


@contextlib.contextmanager
def gunicorn_started(tmp_path: Path, *args: str, **env: str) -> Iterator[Server]:
    """gunicorn with service.worker.Worker on a migrated database, killed on the way out."""
    migrations.apply_pending(database_of(tmp_path))  # gunicorn does not migrate
    with _spawned(tmp_path, GUNICORN, args, env, port_flag="--bind") as server:
        yield server


@contextlib.contextmanager
def _spawned(
    tmp_path: Path,
    command: list[str],
    args: tuple[str, ...],
    env: dict[str, str],
    *,
    port_flag: str,
) -> Iterator[Server]:
    """`python COMMAND PORT_FLAG PORT ARGS` on a free port, its output in a file beside it."""
    port = free_port()
    address = str(port) if port_flag == "--port" else f"127.0.0.1:{port}"
    stderr_path = tmp_path / f"stderr-{port}.txt"
    environ = environment(tmp_path, **env)
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, *command, port_flag, address, *args],
            cwd=REPO_ROOT,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, port, stderr_path, Path(environ["LOG_FILE"]), database_of(tmp_path))
    try:
        yield server
    finally:
        kill_family(process)


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (gunicorn's workers, for its master)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split() if alive(int(child))]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        # A zombie (exited, not yet reaped by its parent) counts as gone.
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def kill_family(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a master and its workers, if still running (a worker outlives a killed master)."""
    workers = children(process.pid)
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def serving(tmp_path: Path, *args: str, **env: str) -> Iterator[Server]:
    """`started`, then wait until /health/ready answers 200."""
    with started(tmp_path, *args, **env) as server:
        wait_until_ready(server)
        yield server


def wait_until_serving(server: Server, path: str = "/health") -> None:
    """Poll `path` until it answers 200; fail (with the server's output) if it never does."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"run.py exited with {server.process.returncode}:\n{server.stderr()}")
        try:
            with urllib.request.urlopen(f"{server.base}{path}", timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            error.close()  # 503 while not ready: poll again
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    pytest.fail(f"run.py did not answer {path} in {START_TIMEOUT} s:\n{server.stderr()}")


def wait_until_ready(server: Server) -> None:
    wait_until_serving(server, "/health/ready")


def call(
    server: Server,
    method: str,
    path: str,
    body: object | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    form: Mapping[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, dict[str, str], bytes]:
    """One request over a fresh connection: (status, headers, body), errors included."""
    if form is not None:
        data: bytes | None = urllib.parse.urlencode(form).encode()
    else:
        data = None if body is None else json.dumps(body).encode()
    url = f"{server.base}{path}"  # always http://127.0.0.1
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    if data is not None:
        content_type = "application/x-www-form-urlencoded" if form else "application/json"
        request.add_header("Content-Type", content_type)
    request.add_header("X-Request-ID", f"proc-{method.lower()}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def call_json(server: Server, method: str, path: str, body: object | None = None, **kw: Any) -> Any:
    """`call` that must succeed (2xx); returns the parsed body (None for an empty one)."""
    status, _, raw = call(server, method, path, body, **kw)
    assert 200 <= status < 300, (method, path, status, raw)
    return json.loads(raw) if raw else None


def login(server: Server, username: str, password: str) -> tuple[int, dict[str, str], bytes]:
    form = {"username": username, "password": password}
    return call(server, "POST", "/login/access-token", form=form)


def login_token(server: Server, username: str, password: str) -> str:
    """Log in (must succeed) and return the access token."""
    status, _, body = login(server, username, password)
    assert status == 200, (username, status, body)
    token: str = json.loads(body)["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_superuser(tmp_path: Path, username: str = "admin", **env: str) -> None:
    """`run.py create-superuser` on the test's database; its password is ADMIN_PASSWORD."""
    result = subprocess.run(
        [sys.executable, "run.py", "create-superuser", "--username", username],
        cwd=REPO_ROOT,
        env=environment(tmp_path, ADMIN_PASSWORD=ADMIN_PASSWORD, **env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


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


def db_rows(
    database: Path | str, sql: str, params: tuple[object, ...] = ()
) -> list[tuple[Any, ...]]:
    """Rows straight from the database, as another process sees it (`?` placeholders)."""
    if isinstance(database, str):
        return engines.rows(database, sql, params)
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as conn:
        return list(conn.execute(sql, params).fetchall())


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


# Raw HTTP/1.1 over a socket, for requests a client library would refuse to send.


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def is_problem(self) -> bool:
        return self.headers.get("content-type", "").startswith("application/problem+json")


def connect(port: int, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_response(sock: socket.socket) -> RawResponse | None:
    """One response read from `sock`; None if the server closed without sending a byte."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            if buffer:
                raise AssertionError(f"connection closed inside the response head: {buffer!r}")
            return None
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed inside the body: {body!r}")
            body += chunk
        body = body[:length]
    else:  # no length: the body ends when the connection does
        while chunk := sock.recv(65536):
            body += chunk
    return RawResponse(int(status_line.split()[1]), headers, body)


def raw_exchange(port: int, data: bytes, timeout: float = 10) -> RawResponse | None:
    """Send `data` on a new connection and read one response."""
    with connect(port, timeout) as sock:
        sock.sendall(data)
        return read_response(sock)


def http_request(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    headers: Mapping[str, str] | None = None,
    content_length: int | None = None,
) -> bytes:
    """The bytes of one HTTP/1.1 request.

    Content-Length is the body's unless given, and left out for a chunked body.
    """
    headers = dict(headers or {})
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    length = len(body) if content_length is None else content_length
    chunked = "chunked" in headers.get("Transfer-Encoding", "")
    if (body and not chunked) or content_length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# Many requests at once, from one asyncio client.


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    json: object = None
    form: Mapping[str, str] | None = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parallel(server: Server, requests: list[Req]) -> list[Reply]:
    """Send every request at once (one connection each); the replies in the same order."""
    return asyncio.run(_parallel(server.base, requests))


async def _parallel(base: str, requests: list[Req]) -> list[Reply]:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as session:

        async def one(request: Req) -> Reply:
            async with session.request(
                request.method,
                request.path,
                json=request.json,
                data=request.form,
                headers=request.headers,
            ) as response:
                return Reply(response.status, dict(response.headers), await response.read())

        return list(await asyncio.gather(*(one(request) for request in requests)))


Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(server: Server) -> Samples:
    """GET /metrics, parsed: {sample name: [(labels, value), ...]}."""
    status, headers, body = call(server, "GET", "/metrics")
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def requests_to(samples: Samples, route: str) -> float:
    answered = samples.get("http_requests_total", [])
    return sum(v for labels, v in answered if labels["route"] == route)


def wait_for_logins_in_flight(server: Server, count: int, *, timeout: float = 20) -> float:
    """Wait until `count` logins have reached the app (answered or in flight, by /metrics);
    return how many requests are still in flight besides the scrape itself."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(server)
        in_flight = sum(v for _, v in samples["http_requests_in_flight"]) - 1  # the scrape
        if requests_to(samples, "/login/access-token") + in_flight >= count:
            return in_flight
        assert time.monotonic() < deadline, f"{count} logins never arrived:\n{server.stderr()}"
        time.sleep(0.02)
