"""Command line: `python run.py` migrates and serves; also create-superuser, copy-to-postgres."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys
from pathlib import Path

from aiohttp import web
from aiohttp.web_runner import GracefulExit
from loguru import logger

from service import create_superuser, keepalive, tokens, workers
from service.app import create_app
from service.db import DatabaseError, copy_to_postgres, migrations
from service.settings import EventLoop, Settings, SettingsError, redacted_url

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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["create-superuser"]:
        return create_superuser.main(argv[1:])
    if argv[:1] == ["copy-to-postgres"]:
        return copy_to_postgres.main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings = dataclasses.replace(
        settings, host=args.host or settings.host, port=args.port or settings.port
    )
    if not _prepare_database(settings, migrate=not args.no_migrate):
        return 1
    if args.workers > 1:
        # Once, before any worker starts: workers would otherwise race to create it.
        tokens.load_or_create_key(settings.secret_key, settings.database_path)
        return workers.supervise(settings, args.workers, Path(__file__).resolve())
    return serve(settings, reuse_port=args.reuse_port)


def _prepare_database(settings: Settings, *, migrate: bool) -> bool:
    """Apply pending migrations; or, told not to, check that none is pending."""
    try:
        if migrate:
            applied = migrations.apply_pending(settings.database_url)
            if applied:
                print(f"applied migrations: {', '.join(applied)}", file=sys.stderr)
            return True
        known = migrations.known_migration_ids(settings.dialect)
        pending = migrations.pending_sync(settings.database_url, known)
    except migrations.MigrationError as error:
        print(f"error: migrations: {error}", file=sys.stderr)
        return False
    if pending:
        print(
            f"error: {redacted_url(settings.database_url)} has pending migrations "
            f"({', '.join(pending)}); run `yoyo apply` or start without --no-migrate",
            file=sys.stderr,
        )
        return False
    return True


def serve(settings: Settings, *, reuse_port: bool = False) -> int:
    """Serve until SIGINT/SIGTERM; migrations must already be applied."""
    app = create_app(settings)
    app.on_startup.append(_stop_gracefully_on_signals)
    keepalive.install()
    try:
        _run_app(app, settings, reuse_port=reuse_port)
    except DatabaseError as error:  # the pool could not open: the start fails, plainly
        print(f"error: the database: {error}", file=sys.stderr)
        return 1
    return 0


def _run_app(app: web.Application, settings: Settings, *, reuse_port: bool) -> None:
    web.run_app(
        app,
        loop=_new_event_loop(settings.event_loop),
        host=settings.host,
        port=settings.port,
        access_log=None,  # our middleware writes the one line per request
        print=lambda message: logger.info(" ".join(message.replace("=", " ").split())),
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
        # Idle connections live KEEPALIVE_TIMEOUT_SECONDS; a request head, once its first
        # byte is in, gets REQUEST_TIMEOUT_SECONDS (service/keepalive.py says why and how).
        keepalive_timeout=settings.keepalive_timeout_seconds,
        head_timeout=settings.request_timeout_seconds,
        lingering_time=lingering_seconds(settings),
        reuse_port=reuse_port or None,
        handle_signals=False,  # _stop_gracefully_on_signals does it, once
    )


def lingering_seconds(settings: Settings) -> float:
    """How long to drain a body after an early answer: LINGERING_SECONDS, at most the timeout."""
    return min(LINGERING_SECONDS, settings.request_timeout_seconds)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def _stop_gracefully_on_signals(app: web.Application) -> None:
    """on_startup: the first SIGINT/SIGTERM begins the graceful stop; repeats are ignored.

    aiohttp's own handlers (handle_signals=True) stay installed during the stop, so a second
    signal (systemd's KillMode=control-group sends one to every process of the unit, and a
    --workers parent passes its own on; a second Ctrl-C) raises GracefulExit again in the
    middle of the cleanup: in-flight requests are cancelled and the cleanup can hang.
    """
    loop = asyncio.get_running_loop()

    def ignore(signum: signal.Signals) -> None:
        logger.warning(f"{signum.name} again while stopping: ignored")

    def begin_stop(signum: signal.Signals) -> None:
        for each in STOP_SIGNALS:  # before anything else: no window for a repeat
            loop.add_signal_handler(each, ignore, each)
        logger.info(f"{signum.name}: stopping gracefully")
        raise GracefulExit  # what aiohttp's own handler raises: run_app then cleans up

    for each in STOP_SIGNALS:
        loop.add_signal_handler(each, begin_stop, each)


def _new_event_loop(choice: EventLoop) -> asyncio.AbstractEventLoop:
    if choice is EventLoop.UVLOOP:
        import uvloop  # only when chosen: the asyncio default needs no extra package

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Products and accounts REST service. "
        "Also: `python run.py create-superuser [--username U] [--password P]`, "
        "`python run.py copy-to-postgres --from FILE --to postgresql://...`."
    )
    parser.add_argument("--host", help="address to listen on (default: HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: PORT or 8000)")
    parser.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not apply migrations; refuse to serve if any is pending",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="number of server processes sharing the port (default 1); see README",
    )
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="bind with SO_REUSEPORT, so that several processes can serve one port",
    )
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


if __name__ == "__main__":
    sys.exit(main())
