"""How the app is served: the runner every serving path uses, and one process until a signal."""

from __future__ import annotations

import asyncio
import functools
import os
import signal

from aiohttp import web
from loguru import logger

from service import connection, keys
from service.descriptors import raise_open_file_limit
from service.settings import EventLoop, Settings

SHUTDOWN_TIMEOUT_SECONDS = 30.0  # in-flight requests get this long after SIGINT/SIGTERM
# After an early answer (413, 408) to a body still arriving, aiohttp reads and discards the
# rest, for at most this long, before it closes the connection: closing with unread bytes
# resets it, and a client still sending then fails in its send and never reads the answer.
# An upload over MAX_BODY_BYTES at a link's full speed needs the time its body takes (1 s
# was too short for a few MiB on a modest uplink); 10 s is aiohttp's own default. A client
# trickling its body lingers just as long, so the time is capped by the request timeout
# (see `lingering_seconds`): the connection of a 408 closes within REQUEST_TIMEOUT_SECONDS
# of the answer, and a slow client is gone within twice that, whatever the operator chose.
LINGERING_SECONDS = 10.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class CannotListen(Exception):
    """The address cannot be listened on (another process has the port, say)."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        # asyncio's own message repeats the address; a name that does not resolve
        # (socket.gaierror) has a negative errno and its words in strerror.
        number = error.errno or 0
        reason = os.strerror(number) if number > 0 else (error.strerror or str(error))
        super().__init__(f"cannot listen on {address(host, port)}: {reason}")


def address(host: str, port: int) -> str:
    """host:port as one would type it, [an IPv6 address] in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def make_runner(app: web.Application) -> connection.AppRunner:
    """The runner for `app`, with our connection class and the timeouts its settings give."""
    settings = app[keys.SETTINGS]
    return connection.AppRunner(
        app,
        access_log=None,  # our middleware writes the one line per request
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
        # Idle connections live KEEPALIVE_TIMEOUT_SECONDS; a request head, once its first
        # byte is in, gets REQUEST_TIMEOUT_SECONDS (service/connection.py says why and how).
        keepalive_timeout=settings.keepalive_timeout_seconds,
        head_timeout=settings.request_timeout_seconds,
        # A new connection's first byte: sooner than keep-alive, so that idle sockets
        # cannot hold every descriptor (service/descriptors.py).
        first_byte_timeout=settings.first_byte_timeout_seconds,
        lingering_time=lingering_seconds(settings),
    )


def lingering_seconds(settings: Settings) -> float:
    """How long to drain a body after an early answer: LINGERING_SECONDS, at most the timeout."""
    return min(LINGERING_SECONDS, settings.request_timeout_seconds)


def new_event_loop(choice: EventLoop) -> asyncio.AbstractEventLoop:
    if choice is EventLoop.UVLOOP:
        import uvloop  # only when chosen: the asyncio default needs no extra package

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def serve_forever(app: web.Application, *, reuse_port: bool = False) -> None:
    """Serve `app` in this process until SIGINT/SIGTERM, then stop gracefully."""
    settings = app[keys.SETTINGS]
    raise_open_file_limit()
    loop_factory = functools.partial(new_event_loop, settings.event_loop)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(app, settings, reuse_port=reuse_port))


async def _serve(app: web.Application, settings: Settings, *, reuse_port: bool) -> None:
    stop = _stop_on_signals()
    runner = make_runner(app)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port or None)
        try:
            await site.start()
        except OSError as error:  # the port in use, an address not of this machine
            raise CannotListen(settings.host, settings.port, error) from None
        logger.info(f"Running on {site.name} (Press CTRL+C to quit)")
        await stop.wait()
    finally:
        await runner.cleanup()  # requests in flight get SHUTDOWN_TIMEOUT_SECONDS


def _stop_on_signals() -> asyncio.Event:
    """An event the first SIGINT/SIGTERM sets; repeats are logged and ignored.

    A repeat (systemd's KillMode=control-group signals every process of the unit, gunicorn's
    master passes its own on, a second Ctrl-C) must not cut the graceful stop short.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def ignore(signum: signal.Signals) -> None:
        logger.warning(f"{signum.name} again while stopping: ignored")

    def begin_stop(signum: signal.Signals) -> None:
        for each in STOP_SIGNALS:
            loop.add_signal_handler(each, ignore, each)
        logger.info(f"{signum.name}: stopping gracefully")
        stop.set()

    for each in STOP_SIGNALS:
        loop.add_signal_handler(each, begin_stop, each)
    return stop
