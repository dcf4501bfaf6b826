"""`python run.py migrate` (`make migrate`): migrate the database the service would use.

The database is the one `python run.py` would serve, from the same settings (DATABASE_URL,
DATABASE_PATH or the default ./products.db), with the same engine's migration files; a
SQLite file's missing folder is created (0700) as run.py creates it. It says what it
applied, or that nothing was pending. On PostgreSQL it takes the nodes' migration lock.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from service.db import migrations
from service.settings import Settings, SettingsError, redacted_url

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_SETTINGS = 2


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    _parser().parse_args(argv)
    try:
        settings = Settings.from_env(environ)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    database = redacted_url(settings.database_url)
    try:
        applied = migrations.apply_pending(settings.database_url)
    except migrations.MigrationError as error:
        print(f"error: migrations: {error}", file=sys.stderr)
        return EXIT_FAILED
    if applied:
        print(f"{database}: applied {len(applied)} migrations: {', '.join(applied)}")
    else:
        print(f"{database}: up to date, no migration pending")
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="run.py migrate",
        description="Apply the pending migrations to the database the service would use "
        "(DATABASE_URL, DATABASE_PATH or ./products.db), and say which.",
    )
