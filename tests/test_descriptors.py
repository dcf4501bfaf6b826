"""Connection exhaustion: run.py lifts its descriptor limit and logs running out once."""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers_process import (
    REPO_ROOT,
    Server,
    call,
    environment,
    free_port,
    kill_family,
    wait_until_serving,
)

pytestmark = pytest.mark.process

EXHAUSTED = "Cannot accept connections: out of file descriptors"


@contextlib.contextmanager
def started_with_limit(tmp_path: Path, soft: int, hard: int, **env: str) -> Iterator[Server]:
    """run.py started with RLIMIT_NOFILE (soft, hard), as `ulimit -n` would set it."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    port = free_port()
    stderr_path = tmp_path / f"stderr-{port}.txt"
    environ = environment(tmp_path, **env)
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "run.py", "--port", str(port)],
            cwd=REPO_ROOT,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,  # in the child before exec: the limit `ulimit -n` sets
        )
    server = Server(process, port, stderr_path, Path(environ["LOG_FILE"]), tmp_path)
    try:
        wait_until_serving(server)
        yield server
    finally:
        kill_family(server.process)


def soft_limit_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no 'Max open files' in /proc/PID/limits")


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one_at_start(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"the hard limit here ({hard}) leaves nothing to raise")
    with started_with_limit(tmp_path, 256, hard) as server:
        assert soft_limit_of(server.process.pid) == hard


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_running_out_of_descriptors_is_logged_once_and_serving_resumes(
    tmp_path: Path, event_loop: str
) -> None:
    limit = 64
    sockets: list[socket.socket] = []
    with started_with_limit(
        tmp_path, limit, limit, EVENT_LOOP=event_loop, FIRST_BYTE_TIMEOUT_SECONDS="30"
    ) as server:
        try:
            for _ in range(2 * limit):  # far more connections than descriptors
                sockets.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
            deadline = time.monotonic() + 10
            while EXHAUSTED not in server.log() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2.5)  # more refusals (asyncio retries the accept every second)
        finally:
            for sock in sockets:
                sock.close()
        time.sleep(3)  # quiet for longer than a spell needs to be over
        status, _, _ = call(server, "GET", "/health", timeout=15)
        log = server.log()
    print(log[-2000:])
    assert status == 200
    assert log.count(EXHAUSTED) == 1, log
    assert "Accepting connections again" in log
    assert "Traceback" not in server.stderr()
