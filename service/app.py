"""The app factory: the one place that wires settings, resources, middlewares and routes."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from service import headers, housekeeping, keys, log, middlewares, tokens
from service.accounts.context import Accounts
from service.auth import authenticate
from service.db import migrations, open_database
from service.db.observed import ObservedDatabase
from service.mail import sender
from service.metrics.web import setup_metrics
from service.openapi import setup_openapi
from service.passwords import PasswordHasher
from service.routes import health, login, products, recovery, sessions, two_factor, users
from service.settings import Settings
from service.validation import validate_requests

ROUTE_TABLES = (
    login.routes,
    sessions.routes,
    users.routes,
    two_factor.routes,
    recovery.routes,
    products.routes,
    health.routes,
)


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """A fully wired application; nothing is opened until it starts.

    `clock` tells the account rules the time (TOTP codes, the login throttle's windows):
    tests pass their own.

    Serve it through service.serving.make_runner: its connection class is part of the
    service (service/connection.py).
    """
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            middlewares.observe,
            middlewares.problems,
            middlewares.deadline(settings.request_timeout_seconds),
            authenticate,
            validate_requests(max_body_bytes=settings.max_body_bytes),
        ],
    )
    app[keys.SETTINGS] = settings
    app[keys.CLOCK] = clock
    app.on_response_prepare.append(headers.on_response_prepare)
    app[keys.KNOWN_MIGRATIONS] = migrations.known_migration_ids(settings.dialect)
    app.cleanup_ctx.extend(
        [
            _logging,
            _database,
            _passwords,
            _token_key,
            _accounts,
            housekeeping.purge_periodically,
            sender.send_periodically,
        ]
    )
    for table in ROUTE_TABLES:
        app.router.add_routes(table)
    setup_openapi(app, settings)
    setup_metrics(app, settings)  # not in the document: service/metrics/web.py says why
    # After setup_openapi, so that the aliases are served but not documented twice.
    _add_collection_aliases(app)
    return app


async def app_factory(argv: list[str] | None = None) -> web.Application:
    """For gunicorn with service.worker.Worker (which run.py --workers starts, too).

    gunicorn's options (--access-logfile) must not switch on aiohttp's access log: our
    middleware already writes the one line per request. Run `yoyo apply` before gunicorn.
    """
    logging.getLogger("aiohttp.access").disabled = True
    # A runner's logging set to DEBUG (a gunicorn --log-config, `python -m aiohttp.web`)
    # would have aiosqlite log every statement with its parameters (password hashes,
    # refresh-token hashes).
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    logging.getLogger("asyncpg").setLevel(logging.WARNING)
    return create_app(Settings.from_env(os.environ))


async def _logging(app: web.Application) -> AsyncIterator[None]:
    sink_ids = log.add_sinks(app[keys.SETTINGS])
    yield
    log.remove_sinks(sink_ids)


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    database = await open_database(settings)
    metrics = app.get(keys.METRICS)
    app[keys.DATABASE] = database if metrics is None else ObservedDatabase(database, metrics)
    yield
    await database.close()


async def _passwords(app: web.Application) -> AsyncIterator[None]:
    hasher = PasswordHasher(
        threads=app[keys.SETTINGS].password_hash_threads, observer=app.get(keys.METRICS)
    )
    await hasher.start()
    app[keys.PASSWORDS] = hasher
    yield
    hasher.close()


async def _token_key(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    app[keys.TOKEN_KEY] = tokens.load_or_create_key(settings.secret_key, settings.database_path)
    yield


async def _accounts(app: web.Application) -> AsyncIterator[None]:
    app[keys.MAIL_QUEUED] = asyncio.Event()
    app[keys.ACCOUNTS] = Accounts(
        database=app[keys.DATABASE],
        passwords=app[keys.PASSWORDS],
        settings=app[keys.SETTINGS],
        token_key=app[keys.TOKEN_KEY],
        mail_queued=app[keys.MAIL_QUEUED].set,
        clock=app[keys.CLOCK],
    )
    yield


def _add_collection_aliases(app: web.Application) -> None:
    """Serve every collection route (`/products/`) without its trailing slash too."""
    for route in list(app.router.routes()):
        path = route.resource.get_info().get("path", "") if route.resource else ""
        if len(path) > 1 and path.endswith("/"):
            app.router.add_route(route.method, path.rstrip("/"), _undocumented(route.handler))


def _undocumented(handler: Any) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def alias(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        return response

    # The auth and validation middlewares read the handler's marks (__access__, __schemas__).
    alias.__dict__.update(
        {name: value for name, value in vars(handler).items() if name != "__apispec__"}
    )
    return alias
