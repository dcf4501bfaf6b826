"""Deadlines a connection meets as an attacker would test them, against run.py and gunicorn.

The bytes of a head go out in the same instant as the connect (a real client's first
request, the slowloris pattern) or right after the previous answer (a kept-alive
connection), then the client stalls: the head deadline (REQUEST_TIMEOUT_SECONDS) must close
the connection, not the idle keep-alive (KEEPALIVE_TIMEOUT_SECONDS). A connection that sends
nothing at all is closed after FIRST_BYTE_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers_process import (
    Server,
    connect,
    gunicorn_started,
    http_request,
    read_response,
    started,
    wait_until_serving,
)

pytestmark = [
    pytest.mark.process,
    pytest.mark.engine_independent(
        "slow clients are cut off before a request reaches the database"
    ),
]

TIMEOUT = 1.5  # REQUEST_TIMEOUT_SECONDS
KEEPALIVE = "60"  # KEEPALIVE_TIMEOUT_SECONDS (and gunicorn's --keep-alive): far above TIMEOUT
# The head of the reproduction: its blank line never comes.
PARTIAL_HEAD = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n"
ATTEMPTS = 4

Serve = Callable[..., contextlib.AbstractContextManager[Server]]


@contextlib.contextmanager
def run_py(tmp_path: Path, **env: str) -> Iterator[Server]:
    with started(tmp_path, **env) as server:
        wait_until_serving(server)
        yield server


@contextlib.contextmanager
def gunicorn(tmp_path: Path, **env: str) -> Iterator[Server]:
    with gunicorn_started(tmp_path, "--keep-alive", KEEPALIVE, **env) as server:
        wait_until_serving(server)
        yield server


SERVERS = pytest.mark.parametrize("serve", [run_py, gunicorn], ids=["run.py", "gunicorn"])


def seconds_until_closed(sock: socket.socket, give_up: float) -> float | None:
    """Seconds until the server closes `sock` (reading and discarding), or None."""
    began = time.monotonic()
    sock.settimeout(give_up)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - began


def head_sent_with_the_connect(port: int) -> float | None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    with sock:
        sock.sendall(PARTIAL_HEAD)
        return seconds_until_closed(sock, give_up=4 * TIMEOUT)


def head_sent_right_after_an_answer(port: int) -> float | None:
    with connect(port) as sock:
        sock.sendall(http_request("GET", "/health"))
        first = read_response(sock)
        assert first is not None and first.status == 200
        sock.sendall(PARTIAL_HEAD)
        return seconds_until_closed(sock, give_up=4 * TIMEOUT)


@SERVERS
@pytest.mark.parametrize(
    "stall",
    [head_sent_with_the_connect, head_sent_right_after_an_answer],
    ids=["with the connect", "right after an answer"],
)
def test_a_stalled_head_is_cut_off_at_the_request_timeout(
    tmp_path: Path, serve: Serve, stall: Callable[[int], float | None]
) -> None:
    """On a fresh connection and on a kept-alive one: the first head was missed before."""
    env = {"REQUEST_TIMEOUT_SECONDS": str(TIMEOUT), "KEEPALIVE_TIMEOUT_SECONDS": KEEPALIVE}
    with serve(tmp_path, **env) as server:
        closed = [stall(server.port) for _ in range(ATTEMPTS)]
    print(f"connections closed after {closed} s")
    assert None not in closed, f"still open {4 * TIMEOUT:g} s into a stalled head"
    assert all(seconds < 3 * TIMEOUT for seconds in closed if seconds is not None), closed


@SERVERS
def test_a_connection_that_never_sends_a_byte_is_closed_after_the_first_byte_timeout(
    tmp_path: Path, serve: Serve
) -> None:
    first_byte = 1.0
    env = {
        "FIRST_BYTE_TIMEOUT_SECONDS": str(first_byte),
        "REQUEST_TIMEOUT_SECONDS": "30",
        "KEEPALIVE_TIMEOUT_SECONDS": KEEPALIVE,
    }
    with serve(tmp_path, **env) as server, connect(server.port) as sock:
        closed = seconds_until_closed(sock, give_up=10 * first_byte)
    print(f"silent connection closed after {closed} s")
    assert closed is not None, f"a silent connection still open after {10 * first_byte:g} s"
    assert closed >= first_byte * 0.9


def test_a_head_begun_in_time_has_the_request_timeout_not_the_first_byte_timeout(
    tmp_path: Path,
) -> None:
    # The first byte stops the first-byte clock: the head then has REQUEST_TIMEOUT_SECONDS.
    env = {"FIRST_BYTE_TIMEOUT_SECONDS": "0.5", "REQUEST_TIMEOUT_SECONDS": "10"}
    with run_py(tmp_path, **env) as server, connect(server.port) as sock:
        request = http_request("GET", "/health")
        sock.sendall(request[:5])
        time.sleep(1.5)  # three first-byte timeouts, well inside the request timeout
        sock.sendall(request[5:])
        response = read_response(sock)
    assert response is not None, "closed by the first-byte timeout after the first byte"
    assert response.status == 200


def test_an_idle_connection_between_requests_still_has_the_keep_alive(tmp_path: Path) -> None:
    # The first-byte timeout is for a new connection only: between requests, keep-alive.
    env = {"FIRST_BYTE_TIMEOUT_SECONDS": "0.5", "KEEPALIVE_TIMEOUT_SECONDS": "10"}
    with run_py(tmp_path, **env) as server, connect(server.port) as sock:
        sock.sendall(http_request("GET", "/health"))
        first = read_response(sock)
        assert first is not None and first.status == 200
        time.sleep(1.5)
        sock.sendall(http_request("GET", "/health"))
        second = read_response(sock)
    assert second is not None and second.status == 200
