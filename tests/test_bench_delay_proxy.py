"""bench/lib/delay_proxy.py passes every byte both ways, each direction D ms later.

The issue-19 measurements ("a database 1 ms away") rest on it: a proxy that lost or
reordered bytes would break the PostgreSQL protocol, and one that did not delay would
measure nothing. Lower bounds only: a busy machine makes any delay longer.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PROXY = Path(__file__).resolve().parents[1] / "bench" / "lib" / "delay_proxy.py"
DELAY_MS = 20


def _echo_server() -> tuple[socket.socket, int]:
    """A server that sends back what it reads, upper-cased, on every connection."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve_one(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data.upper())

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server, server.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def proxy_port() -> Iterator[int]:
    server, target = _echo_server()
    port = _free_port()
    command = [sys.executable, str(PROXY), "--listen", str(port)]
    command += ["--target", f"127.0.0.1:{target}", "--delay-ms", str(DELAY_MS)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == f"listening on {port}"
            yield port
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=10) == 0  # SIGTERM ends it cleanly
            server.close()


def _round_trip(conn: socket.socket, payload: bytes) -> tuple[bytes, float]:
    started = time.monotonic()
    conn.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = conn.recv(65536)
        assert chunk, "the proxy closed the connection"
        received += chunk
    return received, time.monotonic() - started


def test_every_byte_comes_back_in_order_after_both_delays(proxy_port: int) -> None:
    payload = bytes(range(97, 123)) * 40_000  # ~1 MiB: many chunks each way
    with socket.create_connection(("127.0.0.1", proxy_port)) as conn:
        received, elapsed = _round_trip(conn, payload)
    assert received == payload.upper()
    assert elapsed >= 2 * DELAY_MS / 1000


def test_each_round_trip_waits_for_both_directions(proxy_port: int) -> None:
    with socket.create_connection(("127.0.0.1", proxy_port)) as conn:
        for i in range(3):
            received, elapsed = _round_trip(conn, b"select %d;" % i)
            assert received == b"SELECT %d;" % i
            assert elapsed >= 2 * DELAY_MS / 1000


def test_the_client_sees_the_end_when_the_server_closes(proxy_port: int) -> None:
    with socket.create_connection(("127.0.0.1", proxy_port)) as conn:
        conn.sendall(b"bye")
        assert conn.recv(16) == b"BYE"
        conn.shutdown(socket.SHUT_WR)  # the echo server ends its side, the proxy forwards it
        conn.settimeout(10)
        assert conn.recv(16) == b""
