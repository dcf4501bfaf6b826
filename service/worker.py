"""The gunicorn worker class: `gunicorn ... --worker-class service.worker.Worker`.

aiohttp's own GunicornWebWorker, serving through our runner (service/serving.py), so that a
gunicorn worker has the connection class (head deadline, problem+json refusals), timeouts,
event loop and stop log lines of `python run.py`; `run.py --workers N` starts these too.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

from aiohttp import web
from aiohttp.worker import GunicornWebWorker
from gunicorn.arbiter import Arbiter
from loguru import logger

from service import connection, serving, tokens
from service.descriptors import raise_open_file_limit
from service.settings import EventLoop, Settings

AppFactory = Callable[[], Awaitable[web.Application]]


class Worker(GunicornWebWorker):
    """GunicornWebWorker with our runner, EVENT_LOOP, and the stop logged as run.py logs it."""

    slot: int | None = None  # its number among run.py --workers' workers (service/supervisor.py)
    _stopping = False
    _addresses = ""  # where it listens, as gunicorn names it (http://host:port)

    def init_process(self) -> None:
        raise_open_file_limit()  # as run.py does: every connection holds a descriptor
        settings = Settings.from_env(os.environ)
        if settings.secret_key is None:
            try:
                tokens.check_key_file(tokens.key_file_of(settings.database_path))
            except tokens.KeyFileError as error:
                # One line, as run.py says it; gunicorn's master stops on this exit code.
                print(f"error: {error}", file=sys.stderr, flush=True)
                sys.exit(Arbiter.WORKER_BOOT_ERROR)
        # What aiohttp's GunicornUVLoopWebWorker does, when EVENT_LOOP chooses uvloop: the
        # loop GunicornWebWorker.init_process creates then comes from uvloop's policy.
        if settings.event_loop is EventLoop.UVLOOP:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        # The listeners themselves, not gunicorn's wrappers: at the stop uvloop closes a
        # listener's descriptor and then its socket, expecting (and ignoring) EBADF, which
        # a wrapper would log as "Error while closing socket" from every worker.
        wrapped: list[Any] = self.sockets  # type: ignore[has-type]
        self._addresses = ", ".join(str(sock) for sock in wrapped)
        self.sockets = [getattr(sock, "sock", sock) for sock in wrapped]
        super().init_process()

    def load_wsgi(self) -> None:
        # GunicornWebWorker serves an AppRunner returned by the loaded coroutine function
        # as it is: ours, with our connection class and settings, instead of its own.
        super().load_wsgi()
        loaded: web.Application | AppFactory = self.wsgi  # type: ignore[has-type]

        async def runner() -> connection.AppRunner:
            app = loaded if isinstance(loaded, web.Application) else await loaded()
            app.on_startup.append(self._announce)
            return serving.make_runner(app)

        self.wsgi = runner

    async def _announce(self, app: web.Application) -> None:
        """on_startup, after the app's log sinks are open: the worker's first line."""
        number = "" if self.slot is None else f"worker {self.slot}, "
        logger.info(f"Running on {self._addresses} ({number}pid {os.getpid()})")

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM: a graceful stop (repeats change nothing)."""
        self._log_stop(sig)
        super().handle_exit(sig, frame)

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        """SIGINT, SIGQUIT: aiohttp's worker stops these gracefully too."""
        self._log_stop(sig)
        super().handle_quit(sig, frame)

    def _log_stop(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self._stopping:
            logger.warning(f"{name} again while stopping: ignored")
        else:
            self._stopping = True
            logger.info(f"{name}: stopping gracefully")
