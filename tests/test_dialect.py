"""service/db/dialect.py: the few places where the engines' SQL differs."""

from __future__ import annotations

import re

import pytest

from service.db.dialect import (
    Dialect,
    contains,
    equals_ignoring_case,
    for_update_skip_locked,
    numbered_placeholders,
    positional,
)
from service.queries import account_tokens, login_failures, outbox, products, sessions, users


def test_named_placeholders_become_numbered_in_order_of_first_use() -> None:
    sql, names = numbered_placeholders("SELECT :b, :a WHERE x = :b AND y > :a_2")
    assert sql == "SELECT $1, $2 WHERE x = $1 AND y > $3"
    assert names == ("b", "a", "a_2")


def test_a_cast_and_a_time_are_not_placeholders() -> None:
    sql, names = numbered_placeholders("SELECT x::text, '12:30' , :value")
    assert sql == "SELECT x::text, '12:30' , $1"
    assert names == ("value",)


def test_positional_values_follow_the_numbering_and_a_missing_one_is_an_error() -> None:
    _, names = numbered_placeholders("UPDATE t SET a = :a WHERE id = :id AND a <> :a")
    assert positional(names, {"id": 7, "a": "x", "unused": 1}) == ["x", 7]
    with pytest.raises(KeyError):
        positional(names, {"a": "x"})


def _statements() -> list[str]:
    modules = (users, products, sessions, login_failures, account_tokens, outbox)
    return [
        value
        for module in modules
        for name, value in vars(module).items()
        if name.isupper()
        and isinstance(value, str)
        and re.search(r"\b(SELECT|INSERT|UPDATE|DELETE)\b", value)
    ]


def test_every_shipped_statement_converts_without_a_leftover_colon_name() -> None:
    statements = _statements()
    assert len(statements) > 20
    for statement in statements:
        sql, names = numbered_placeholders(statement)
        assert not re.search(r"(?<!:):[A-Za-z_]", sql), sql
        assert sorted(f"${n}" for n in range(1, len(names) + 1)) == sorted(
            set(re.findall(r"\$\d+", sql))
        )


@pytest.mark.parametrize(
    ("dialect", "match", "search"),
    [
        (Dialect.SQLITE, "username = :u", "instr(name_folded, :q) > 0"),
        (
            Dialect.POSTGRESQL,
            'lower(username COLLATE "C") = lower(:u COLLATE "C")',
            "strpos(name_folded, :q) > 0",
        ),
    ],
)
def test_fragments_per_engine(dialect: Dialect, match: str, search: str) -> None:
    assert equals_ignoring_case(dialect, "username", "u") == match
    assert contains(dialect, "name_folded", "q") == search


def test_claiming_rows_skips_locked_ones_on_postgresql_only() -> None:
    """SQLite runs one unit of work at a time: there is no row lock to take or skip."""
    assert for_update_skip_locked(Dialect.POSTGRESQL) == " FOR UPDATE SKIP LOCKED"
    assert for_update_skip_locked(Dialect.SQLITE) == ""
