"""Every typed key under which state lives on the app or on a request."""

from __future__ import annotations

from aiohttp import web

from service.db import Database
from service.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
KNOWN_MIGRATIONS = web.AppKey("known_migrations", frozenset)

REQUEST_ID = web.RequestKey("request_id", str)
