"""Command line: `python run.py` migrates and serves; also migrate, create-superuser, etc."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from service import create_superuser, migrate, tokens
from service.app import create_app
from service.db import DatabaseError, copy_to_postgres, migrations
from service.migrate import THROUGH_A_POOLER
from service.serving import CannotListen, serve_forever
from service.settings import Settings, SettingsError, parse_port, redacted_url
from service.supervisor import supervise


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["create-superuser"]:
        return create_superuser.main(argv[1:])
    if argv[:1] == ["copy-to-postgres"]:
        return copy_to_postgres.main(argv[1:])
    if argv[:1] == ["migrate"]:
        return migrate.main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings = dataclasses.replace(
        settings,
        host=args.host or settings.host,
        port=settings.port if args.port is None else args.port,
    )
    if not _key_file_is_safe(settings):
        return 1
    if not _prepare_database(settings, migrate=not args.no_migrate):
        return 1
    if args.workers > 1:
        # Once, before any worker starts: workers would otherwise race to create it.
        tokens.load_or_create_key(settings.secret_key, settings.database_path)
        try:
            return supervise(settings, workers=args.workers, reuse_port=args.reuse_port)
        except CannotListen as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    return serve(settings, reuse_port=args.reuse_port)


def _key_file_is_safe(settings: Settings) -> bool:
    """The generated key's file, if there is one, is owner-only; say plainly if not."""
    if settings.secret_key is not None:
        return True
    try:
        tokens.check_key_file(tokens.key_file_of(settings.database_path))
    except tokens.KeyFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return False
    return True


def _prepare_database(settings: Settings, *, migrate: bool) -> bool:
    """Apply pending migrations; or, told not to, check that none is pending."""
    if migrate and settings.database_transaction_pooler:
        print(f"error: {THROUGH_A_POOLER}", file=sys.stderr)
        return False
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
        # Not `yoyo apply`: that migrates yoyo.ini's database, not the one these settings name.
        fix = (
            "apply them on the server directly (`python run.py migrate` with DATABASE_URL "
            "naming it and DATABASE_TRANSACTION_POOLER unset)"
            if settings.database_transaction_pooler
            else "migrate it with `python run.py migrate` (`make migrate`) and the same "
            "settings, or start without --no-migrate"
        )
        print(
            f"error: {redacted_url(settings.database_url)} has pending migrations "
            f"({', '.join(pending)}); {fix}",
            file=sys.stderr,
        )
        return False
    return True


def serve(settings: Settings, *, reuse_port: bool = False) -> int:
    """Serve in this process until SIGINT/SIGTERM; migrations must already be applied."""
    try:
        serve_forever(create_app(settings), reuse_port=reuse_port)
    except DatabaseError as error:  # the pool could not open: the start fails, plainly
        print(f"error: the database: {error}", file=sys.stderr)
        return 1
    except CannotListen as error:  # the port in use: one line, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Products and accounts REST service. "
        "Also: `python run.py migrate` (migrate only, and say what was applied), "
        "`python run.py create-superuser [--username U] [--password P]`, "
        "`python run.py copy-to-postgres --from FILE --to postgresql://...`."
    )
    parser.add_argument("--host", help="address to listen on (default: HOST or 127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, help="port to listen on, 1-65535 (default: PORT or 8000)"
    )
    parser.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not apply migrations; refuse to serve if any is pending",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="number of worker processes under gunicorn, sharing the port (default 1); see README",
    )
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="bind with SO_REUSEPORT, so that other processes can serve the same port",
    )
    return parser


def _port(text: str) -> int:
    try:
        return parse_port(text)
    except ValueError as error:  # argparse would say only "invalid _port value"
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    # Worded as --port's errors are; argparse would say only "invalid _positive value".
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("expected an integer, 1 or more")
    return value


if __name__ == "__main__":
    sys.exit(main())
