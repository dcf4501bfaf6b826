"""The few places where SQLite's SQL and PostgreSQL's differ, kept together and tested.

The query modules write every statement once, with `:name` placeholders, in the SQL both
engines share. What differs is here: the placeholder style asyncpg needs, matching a
username ignoring case, and finding a substring. The DDL differs too (identity columns,
booleans, collations); it lives in each engine's own migration files, `sql/<engine>/`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache


class Dialect(enum.StrEnum):
    """A database engine the service runs on; the value is its URL scheme."""

    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


# `:name`, but not the second colon of a PostgreSQL cast (`::text`); none of our SQL has
# string literals with colons, and test_dialect.py checks every statement we ship.
_NAMED_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@lru_cache(maxsize=512)
def numbered_placeholders(sql: str) -> tuple[str, tuple[str, ...]]:
    """`:name` placeholders as PostgreSQL's `$1, $2, ...`, and the names in number order.

    A name used twice gets one number, so a value is sent once. Cached: the query modules
    send a few dozen distinct statements, so each is converted once per process.
    """
    names: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${names.setdefault(match.group(1), len(names) + 1)}"

    return _NAMED_PLACEHOLDER.sub(number, sql), tuple(names)


def positional(names: Sequence[str], params: Mapping[str, object]) -> list[object]:
    """The values of `params` in the order of `names`; a missing name is a KeyError."""
    return [params[name] for name in names]


def equals_ignoring_case(dialect: Dialect, column: str, param: str) -> str:
    """A condition: `column` equals the parameter `param`, ignoring ASCII case.

    SQLite declares the column COLLATE NOCASE, so plain `=` ignores case and uses the
    unique index; PostgreSQL's unique index is on lower(column COLLATE "C"), which this
    matches: "C" folds ASCII only, whatever the database's locale (Turkish I, say).
    """
    if dialect is Dialect.POSTGRESQL:
        return f'lower({column} COLLATE "C") = lower(:{param} COLLATE "C")'
    return f"{column} = :{param}"


def contains(dialect: Dialect, column: str, param: str) -> str:
    """A condition: the text in `column` contains the parameter `param` literally.

    Not LIKE: `%` and `_` in a search must match themselves.
    """
    if dialect is Dialect.POSTGRESQL:
        return f"strpos({column}, :{param}) > 0"
    return f"instr({column}, :{param}) > 0"


def for_update_skip_locked(dialect: Dialect) -> str:
    """The clause that ends a SELECT claiming rows one worker alone will handle.

    PostgreSQL locks the rows read and skips those another transaction holds; SQLite has
    no row locks and needs none: its units of work run one at a time.
    """
    return " FOR UPDATE SKIP LOCKED" if dialect is Dialect.POSTGRESQL else ""


def for_update(dialect: Dialect) -> str:
    """The clause that ends a SELECT of rows the unit of work will decide on and write.

    PostgreSQL locks them until COMMIT (a concurrent writer waits, then sees the new
    version); SQLite needs nothing: its units of work run one at a time.
    """
    return " FOR UPDATE" if dialect is Dialect.POSTGRESQL else ""


def for_share(dialect: Dialect) -> str:
    """Like `for_update`, but readers sharing the lock do not wait for one another."""
    return " FOR SHARE" if dialect is Dialect.POSTGRESQL else ""
