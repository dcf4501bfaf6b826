"""`open_database`: the engine the settings name, opened behind the Database interface.

The one module that knows both engines. Nothing in the package imports it back, so the
engines can import the interface without an import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.db.interface import Database
from service.db.postgres import PostgresDatabase
from service.db.sqlite import SqliteDatabase

if TYPE_CHECKING:  # at run time service.settings imports this package (Dialect, Synchronous)
    from service.settings import Settings


async def open_database(settings: Settings, *, pool_size: int | None = None) -> Database:
    """Open the database the settings name; `pool_size` overrides the configured size."""
    if settings.postgres_url is not None:
        return await PostgresDatabase.open(
            settings.postgres_url,
            pool_size=pool_size or settings.database_pool_size,
            transaction_pooler=settings.database_transaction_pooler,
        )
    return await SqliteDatabase.open(
        settings.database_path,
        readers=pool_size or settings.database_readers,
        synchronous=settings.database_synchronous,
    )
