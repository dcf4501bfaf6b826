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
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            _signal(process, signal.SIGTERM)

    processes: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for number in range(1, workers + 1):
        processes.append(_start_worker(settings, number, run_py))
    print(
        f"serving on http://{settings.host}:{settings.port} with {workers} workers "
        f"(pids {', '.join(str(p.pid) for p in processes)})",
        file=sys.stderr,
    )
    while all(process.poll() is None for process in processes):
        time.sleep(_POLL_SECONDS)
    if not stopping:  # a worker died by itself: stop the rest, and say so
        print("error: a worker exited; stopping the others", file=sys.stderr)
        for process in processes:
            _signal(process, signal.SIGTERM)
    codes = [_wait(process) for process in processes]
    # -SIGTERM: a worker still starting up when told to stop ends by the signal itself.
    return 0 if stopping and all(code in (0, -signal.SIGTERM) for code in codes) else 1


def _start_worker(settings: Settings, number: int, run_py: Path) -> subprocess.Popen[bytes]:
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
        command, env=env, start_new_session=True, preexec_fn=_stop_when_parent_dies
    )


def _stop_when_parent_dies() -> None:
    """Linux: SIGTERM this worker when the parent dies, even by SIGKILL (no orphans)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
    if process.poll() is None:
        process.send_signal(signum)


def _wait(process: subprocess.Popen[bytes]) -> int:
    try:
        return process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
