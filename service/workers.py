"""`run.py --workers N`: N server processes sharing one port (SO_REUSEPORT) and one database.

The parent does what must happen once before any worker starts (migrations, the key file),
then starts each worker as `run.py --no-migrate --reuse-port` and supervises them: SIGTERM
or SIGINT is passed on to every worker, and if one worker dies the others are stopped, so
that a process manager sees the failure instead of a service running at reduced strength.
Each worker logs to its own file (`app.log` becomes `app.1.log`, `app.2.log`, ...): two
processes rotating one file would rename it under each other.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from service.settings import Settings

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
STOP_GRACE_SECONDS = 35.0  # a worker's own shutdown timeout (30 s), and a little more
_POLL_SECONDS = 0.2


def worker_log_file(log_file: Path, number: int) -> Path:
    """Worker `number`'s log file beside LOG_FILE: logs/app.log -> logs/app.2.log."""
    return log_file.with_name(f"{log_file.stem}.{number}{log_file.suffix}")


def supervise(settings: Settings, workers: int, run_py: Path) -> int:
    """Start `workers` worker processes and wait; the exit code is 0 only after a clean stop."""
    processes: list[subprocess.Popen[bytes]] = []
    signalled: set[int] = set()  # pids already sent their one SIGTERM
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        # Only the first signal counts. A repeat (systemd's KillMode=control-group signals
        # every process of the unit, a second Ctrl-C) is not passed on: a worker that is
        # already shutting down gracefully needs no second SIGTERM.
        if not stopping:
            stopping = True
            _stop_all(processes, signalled)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    parent = os.getpid()
    for number in range(1, workers + 1):
        if stopping:  # told to stop while starting: start no more
            break
        processes.append(_start_worker(settings, number, run_py, parent))
    if stopping:
        # The signal may have come while the last worker was being started, after its fork
        # but before it was in the list that the handler signalled.
        _stop_all(processes, signalled)
    else:
        print(
            f"serving on http://{settings.host}:{settings.port} with {workers} workers "
            f"(pids {', '.join(str(p.pid) for p in processes)})",
            file=sys.stderr,
        )
    while not stopping and all(process.poll() is None for process in processes):
        time.sleep(_POLL_SECONDS)
    if not stopping:  # a worker died by itself: stop the rest, and say so
        print("error: a worker exited; stopping the others", file=sys.stderr)
        _stop_all(processes, signalled)
    # One deadline for all: N workers stopping in parallel take one grace period, not N.
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    codes = [_wait(process, deadline) for process in processes]
    # -SIGTERM: a worker still starting up when told to stop ends by the signal itself.
    return 0 if stopping and all(code in (0, -signal.SIGTERM) for code in codes) else 1


def _stop_all(processes: list[subprocess.Popen[bytes]], signalled: set[int]) -> None:
    """SIGTERM every running worker that has not had it yet."""
    for process in list(processes):
        if process.pid not in signalled and process.poll() is None:
            signalled.add(process.pid)
            process.send_signal(signal.SIGTERM)


def _start_worker(
    settings: Settings, number: int, run_py: Path, parent: int
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LOG_FILE": str(worker_log_file(settings.log_file, number)),
        "HOST": settings.host,
        "PORT": str(settings.port),
    }
    command = [sys.executable, str(run_py), "--no-migrate", "--reuse-port"]
    # A session of its own: a Ctrl-C in the terminal reaches the parent only, which turns
    # it into one orderly SIGTERM per worker (a second signal would cut a shutdown short).
    # The parent has no threads here, so preexec_fn is safe.
    return subprocess.Popen(  # noqa: S603
        command,
        env=env,
        start_new_session=True,
        preexec_fn=functools.partial(_stop_when_parent_dies, parent),
    )


def _stop_when_parent_dies(parent: int) -> None:
    """Linux: SIGTERM this worker when the parent dies, even by SIGKILL (no orphans).

    Runs in the child between fork and exec. The death signal only covers a parent that
    dies after prctl: one that died since the fork has already left this child to init, so
    the child checks and, orphaned, exits at once.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)


def _wait(process: subprocess.Popen[bytes], deadline: float) -> int:
    try:
        return process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
