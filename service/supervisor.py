"""`run.py --workers N`: N worker processes on one port, supervised by gunicorn's master.

run.py does what must happen once (migrations, the key file) before this starts. gunicorn's
master binds the port and forks the workers (service.worker.Worker); it replaces a worker
that dies, and on SIGTERM or SIGINT stops every worker gracefully and exits 0. Each worker
logs to its own file (`app.log` becomes `app.1.log`, `app.2.log`, ...): two processes
rotating one file would rename it under each other. The number is the worker's slot, and a
worker that replaces a dead one takes the dead one's slot, so the files stay N.

With METRICS_ENABLED the master makes a fresh private directory for the workers' metric
files (PROMETHEUS_MULTIPROC_DIR) before the first fork, tells prometheus-client of each
worker's exit (its live gauges go), and removes the directory when it stops.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from service.app import app_factory
from service.metrics import workers as metric_files
from service.metrics.registry import MULTIPROCESS_VARIABLE
from service.serving import SHUTDOWN_TIMEOUT_SECONDS, CannotListen
from service.settings import Settings
from service.worker import Worker

# A worker's own shutdown takes up to SHUTDOWN_TIMEOUT_SECONDS; the master waits a little
# longer before it SIGKILLs what is left.
STOP_GRACE_SECONDS = math.ceil(SHUTDOWN_TIMEOUT_SECONDS) + 5  # gunicorn takes whole seconds


def worker_log_file(log_file: Path, number: int) -> Path:
    """Worker `number`'s log file beside LOG_FILE: logs/app.log -> logs/app.2.log."""
    return log_file.with_name(f"{log_file.stem}.{number}{log_file.suffix}")


class Supervisor(BaseApplication):  # type: ignore[misc]  # gunicorn has no type hints
    """gunicorn, configured here rather than by a command line or a gunicorn.conf.py."""

    def __init__(self, settings: Settings, *, workers: int, reuse_port: bool) -> None:
        self._settings = settings
        self._workers = workers
        self._reuse_port = reuse_port
        super().__init__()

    def load_config(self) -> None:
        settings = self._settings
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        options: dict[str, Any] = {
            "bind": [f"{host}:{settings.port}"],
            "workers": self._workers,
            "worker_class": f"{Worker.__module__}.{Worker.__qualname__}",
            "graceful_timeout": STOP_GRACE_SECONDS,
            # A worker that has not reported in this long is hung: replaced.
            "timeout": math.ceil(SHUTDOWN_TIMEOUT_SECONDS),
            # For gunicorn's own view only: the worker takes KEEPALIVE_TIMEOUT_SECONDS
            # (fractions too) from the settings, as run.py does.
            "keepalive": math.ceil(settings.keepalive_timeout_seconds),
            "accesslog": None,  # our middleware writes the one line per request
            "reuse_port": self._reuse_port,
            "when_ready": self._when_ready,
            "pre_fork": _pre_fork,
            "post_fork": self._post_fork,
            "child_exit": _child_exit,
        }
        for name, value in options.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        return app_factory

    def _when_ready(self, arbiter: Any) -> None:
        settings = self._settings
        print(
            f"serving on http://{settings.host}:{settings.port} with {self._workers} workers "
            f"(gunicorn master, pid {os.getpid()})",
            file=sys.stderr,
            flush=True,
        )

    def _post_fork(self, arbiter: Any, worker: Worker) -> None:
        """In the new worker, before it reads its settings: its own log file."""
        if worker.slot is not None:  # always, from _pre_fork
            os.environ["LOG_FILE"] = str(worker_log_file(self._settings.log_file, worker.slot))


def check_can_listen(host: str, port: int, *, reuse_port: bool) -> None:
    """Bind the address as gunicorn will, and let go: raise CannotListen if that fails.

    gunicorn's master would log `Connection in use` five times over five seconds, then
    exit; run.py says it in one line at once, as it does with one process.
    """
    try:
        family, kind, proto, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
            if reuse_port:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            probe.bind(where)
    except OSError as error:
        raise CannotListen(host, port, error) from None


def _pre_fork(arbiter: Any, worker: Worker) -> None:
    """In the master: the lowest slot no live worker holds (a dead worker's, if one died)."""
    taken = {each.slot for each in arbiter.WORKERS.values()}
    worker.slot = next(number for number in range(1, len(taken) + 2) if number not in taken)


def _child_exit(arbiter: Any, worker: Worker) -> None:
    """In the master, after a worker exited: its live gauges (in flight now) are dropped."""
    folder = os.environ.get(MULTIPROCESS_VARIABLE)
    if folder:
        metric_files.worker_exited(worker.pid, Path(folder))


def supervise(settings: Settings, *, workers: int, reuse_port: bool) -> int:
    """Run gunicorn's master until it is stopped; it exits the process (0 after a clean stop).

    Each worker is forked from inside this call and leaves through it as well, with its own
    exit code (SystemExit), so nothing after it runs in a worker. Raises CannotListen, before
    gunicorn starts, if the address cannot be bound.
    """
    check_can_listen(settings.host, settings.port, reuse_port=reuse_port)
    master = os.getpid()
    metrics_dir = None
    if settings.metrics_enabled:  # the workers inherit it (service/metrics/workers.py)
        metrics_dir = metric_files.fresh_folder()
        os.environ[MULTIPROCESS_VARIABLE] = str(metrics_dir)
    else:
        os.environ.pop(MULTIPROCESS_VARIABLE, None)
    try:
        Supervisor(settings, workers=workers, reuse_port=reuse_port).run()
    finally:
        if metrics_dir is not None and os.getpid() == master:  # not as a worker leaves
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
