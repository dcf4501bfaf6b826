"""Every typed key under which state lives on the app or on a request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from service.accounts.context import Accounts
from service.db import Database
from service.messages import Language
from service.metrics.registry import Metrics
from service.passwords import PasswordHasher
from service.queries.users import User
from service.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
KNOWN_MIGRATIONS = web.AppKey("known_migrations", frozenset)
TOKEN_KEY = web.AppKey("token_key", str)  # the JWT signing key: never logged
PASSWORDS = web.AppKey("passwords", PasswordHasher)
ACCOUNTS = web.AppKey("accounts", Accounts)  # the account rules' database, hasher, key
# The OpenAPI document /openapi.json serves, built once from the routes' declarations.
OPENAPI_DOCUMENT = web.AppKey[dict[str, Any]]("openapi_document")
MAIL_QUEUED = web.AppKey("mail_queued", asyncio.Event)  # set: the outbox has new mail
CLOCK = web.AppKey[Callable[[], float]]("clock")  # time.time, or a test's clock
METRICS = web.AppKey("metrics", Metrics)  # only with METRICS_ENABLED (service/metrics/)

REQUEST_ID = web.RequestKey("request_id", str)
CLIENT_ADDRESS = web.RequestKey[str | None]("client_address")  # see service/client_address.py
CURRENT_USER = web.RequestKey[User | None]("current_user")
CURRENT_SESSION = web.RequestKey[str | None]("current_session")
# The language an answer's texts are in, once chosen from Accept-Language (service/headers.py).
LANGUAGE = web.RequestKey[Language]("language")

# Parsed input: the validation middleware puts each schema a route declared under one of
# these (a JSON body, or a form where the route accepts_form_too; the query string; a form).
BODY = web.RequestKey[dict[str, Any]]("body")
QUERY = web.RequestKey[dict[str, Any]]("querystring")
FORM = web.RequestKey[dict[str, Any]]("form")
