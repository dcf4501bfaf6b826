"""Every typed key under which state lives on the app or on a request."""

from __future__ import annotations

from aiohttp import web

from service.db import Database
from service.passwords import PasswordHasher
from service.queries.users import User
from service.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
KNOWN_MIGRATIONS = web.AppKey("known_migrations", frozenset)
TOKEN_KEY = web.AppKey("token_key", str)  # the JWT signing key: never logged
PASSWORDS = web.AppKey("passwords", PasswordHasher)

REQUEST_ID = web.RequestKey("request_id", str)
CURRENT_USER = web.RequestKey[User | None]("current_user")
CURRENT_SESSION = web.RequestKey[str | None]("current_session")
