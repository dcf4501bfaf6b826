"""`python -m service.create_superuser`: create the first superuser if absent.

The password comes from --password, else ADMIN_PASSWORD, else a random one; it is
printed to the terminal once and never written to the log file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from collections.abc import Mapping

from service.accounts import users
from service.db import DatabaseError, migrations, open_database
from service.passwords import PasswordHasher
from service.queries.users import User
from service.schemas.users import username_problem
from service.settings import Settings, SettingsError

EXIT_OK = 0
EXIT_REGULAR_USER = 1
EXIT_BAD_SETTINGS = 2
EXIT_NO_DATABASE = 3


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env(environ)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    problem = username_problem(args.username)
    if problem is not None:
        print(f"error: --username {args.username!r}: {problem}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    password = args.password or environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(16)
    if not 8 <= len(password) <= 128:
        print("error: the password must be 8 to 128 characters", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    try:
        migrations.apply_pending(settings.database_url)
        return asyncio.run(create_superuser(settings, args.username, password))
    except (migrations.MigrationError, DatabaseError) as error:
        print(f"error: the database: {error}", file=sys.stderr)
        return EXIT_NO_DATABASE


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="run.py create-superuser", description="Create the first superuser if absent."
    )
    result.add_argument("--username", default="admin", help="default: admin")
    result.add_argument("--password", help="default: ADMIN_PASSWORD, else a random one")
    return result


async def create_superuser(settings: Settings, username: str, password: str) -> int:
    """Create `username` as an active superuser unless it exists; return the exit code."""
    database = await open_database(settings, pool_size=1)
    # One hashing thread: the command hashes once.
    passwords = PasswordHasher(threads=1)
    try:
        outcome = await users.create_superuser(
            database, passwords, username=username, password=password
        )
    finally:
        passwords.close()
        await database.close()
    if outcome.created:
        print(f"created superuser {username!r} with password: {password}")
        return EXIT_OK
    if outcome.user is None:
        print(f"user {username!r} was just created elsewhere; nothing changed")
        return EXIT_OK
    return _report_existing(outcome.user)


def _report_existing(user: User) -> int:
    if user.is_superuser:
        print(f"superuser {user.username!r} already exists; nothing changed")
        return EXIT_OK
    print(
        f"error: {user.username!r} is a regular user; nothing changed "
        "(choose another --username, or promote it with PATCH /users/{id})",
        file=sys.stderr,
    )
    return EXIT_REGULAR_USER


if __name__ == "__main__":
    sys.exit(main())
