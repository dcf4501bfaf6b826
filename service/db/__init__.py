"""The database: an engine-neutral interface, the engines behind it, and the schema.

- `interface`: Database, Connection, Row, and the errors every engine raises
- `opening`: open_database(settings), which picks the engine
- `sqlite`, `postgres`: the engines; `dialect`: the SQL they do not share
- `migrations`: yoyo; `copy_to_postgres`: `run.py copy-to-postgres`

Callers import the interface from here (`from service.db import Connection`). Modules of
this package import `service.db.interface` instead, never this file: it imports `opening`,
which imports the engines.
"""

from service.db.interface import (
    Connection,
    Database,
    DatabaseError,
    DatabaseUnavailable,
    ForeignKeyViolation,
    IntegrityError,
    InvalidValue,
    Params,
    Row,
    UndefinedTable,
    UniqueViolation,
    WriteConflict,
    returned,
)
from service.db.opening import open_database

__all__ = [
    "Connection",
    "Database",
    "DatabaseError",
    "DatabaseUnavailable",
    "ForeignKeyViolation",
    "IntegrityError",
    "InvalidValue",
    "Params",
    "Row",
    "UndefinedTable",
    "UniqueViolation",
    "WriteConflict",
    "open_database",
    "returned",
]
