"""gunicorn with the project's worker class serves as run.py does: the same connection class."""

from __future__ import annotations

import re
import select
import signal
import time
from pathlib import Path

import pytest

from tests.helpers_process import (
    Server,
    call,
    children,
    connect,
    gunicorn_started,
    http_request,
    raw_exchange,
    read_response,
    wait_until_serving,
)

pytestmark = pytest.mark.process

TIMEOUT = 1.5  # REQUEST_TIMEOUT_SECONDS
# gunicorn's own keep-alive, far above TIMEOUT: were the worker's connection aiohttp's own,
# a trickled head would live this long; only the head deadline can cut it off sooner.
GUNICORN_KEEPALIVE = "60"


def closed_after_trickled_head(server: Server) -> float | None:
    """Seconds from a kept-alive connection's next head's first byte to its close (or None)."""
    head = b"GET /products/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    with connect(server.port) as sock:
        sock.sendall(http_request("GET", "/products/"))
        first = read_response(sock)
        assert first is not None and first.status == 200
        sock.sendall(head[:1])
        began, sent = time.monotonic(), 1
        while time.monotonic() - began < 3 * TIMEOUT:
            readable, _, _ = select.select([sock], [], [], 0.1)
            try:
                if readable and not sock.recv(65536):
                    return time.monotonic() - began
                sock.sendall((head[sent:] or b"x")[:1])
                sent += 1
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - began
    return None


def test_a_trickled_head_is_cut_off_and_an_idle_connection_lives_its_keep_alive(
    tmp_path: Path,
) -> None:
    keepalive = 4.0
    with gunicorn_started(
        tmp_path,
        "--keep-alive",
        GUNICORN_KEEPALIVE,
        REQUEST_TIMEOUT_SECONDS=str(TIMEOUT),
        KEEPALIVE_TIMEOUT_SECONDS=str(keepalive),
    ) as server:
        wait_until_serving(server)
        closed = closed_after_trickled_head(server)
        print(f"head trickled under gunicorn: closed at {closed} s")
        assert closed is not None, f"still open {3 * TIMEOUT:g} s into a trickled head"
        assert closed < 2 * TIMEOUT

        # KEEPALIVE_TIMEOUT_SECONDS, not gunicorn's --keep-alive, times an idle connection.
        with connect(server.port, timeout=3 * keepalive) as sock:
            sock.sendall(http_request("GET", "/products/"))
            first = read_response(sock)
            assert first is not None and first.status == 200
            idle_since = time.monotonic()
            assert sock.recv(1) == b""
            idle = time.monotonic() - idle_since
        print(f"idle connection closed after {idle:.2f} s (keep-alive {keepalive:g} s)")
        assert keepalive * 0.9 <= idle < keepalive + 2


def test_a_request_the_http_parser_refuses_is_answered_problem_json(tmp_path: Path) -> None:
    oversized = http_request("GET", "/products/", headers={"X-Big": "b" * 20_000})
    with gunicorn_started(tmp_path) as server:
        wait_until_serving(server)
        response = raw_exchange(server.port, oversized)
        assert response is not None, "closed without an answer"
        assert response.status in (400, 431), response
        assert response.is_problem, response.headers
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
        assert re.fullmatch(r"\d+\.\d{2}", response.headers["x-process-time-ms"])
        assert b"bbbbbbbb" not in response.body
        assert call(server, "GET", "/health")[0] == 200  # and it goes on serving
        log, output = server.log(), server.stderr()
    refusals = [line for line in log.splitlines() if "Refused a request" in line]
    assert len(refusals) == 1, log
    assert "bbbbbbbb" not in log and "bbbbbbbb" not in output
    assert "Error handling request" not in output


@pytest.mark.parametrize(("chosen", "uvloop_loaded"), [(None, True), ("asyncio", False)])
def test_a_worker_runs_on_the_chosen_event_loop_and_stops_with_0(
    tmp_path: Path, chosen: str | None, uvloop_loaded: bool
) -> None:
    env = {} if chosen is None else {"EVENT_LOOP": chosen}
    with gunicorn_started(tmp_path, **env) as server:
        wait_until_serving(server)
        (worker,) = children(server.process.pid)
        assert ("uvloop" in Path(f"/proc/{worker}/maps").read_text()) is uvloop_loaded
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=15) == 0, server.stderr()
        log = server.log()
    assert re.search(rf"Running on http://127\.0\.0\.1:\d+ \(pid {worker}\)", log), log
    assert "SIGTERM: stopping gracefully" in log, log
    assert "Traceback" not in server.stderr()
    assert "Error while closing socket" not in server.stderr(), server.stderr()
