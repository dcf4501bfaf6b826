"""service.queries.products against the migrated database, read back with SQL."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from service.db import Database, IntegrityError
from service.queries import products
from service.queries.products import SORT_ORDERS, Product, ProductFilter

T0 = "2026-11-27T10:00:00+00:00"
T1 = "2026-11-27T10:05:00+00:00"


async def rows(database: Database) -> list[dict[str, Any]]:
    async with database.read() as conn:
        found = await conn.fetch_all("SELECT * FROM products ORDER BY id")
    return [dict(row) for row in found]


async def create(database: Database, **fields: Any) -> Product:
    """Create a product (Tea at 450 cents unless told otherwise) at T0."""
    async with database.transaction() as conn:
        return await products.create_product(
            conn,
            name=fields.pop("name", "Tea"),
            price_cents=fields.pop("price_cents", 450),
            now=T0,
            **fields,
        )


async def page(
    database: Database,
    *,
    sort: str = "id",
    skip: int = 0,
    limit: int = 100,
    **filters: Any,
) -> tuple[list[int], int]:
    async with database.read(snapshot=True) as conn:
        result = await products.list_products(
            conn, filters=ProductFilter(**filters), sort=sort, skip=skip, limit=limit
        )
    return [p.id for p in result.items], result.count


# --- create / get -----------------------------------------------------------------------------


async def test_create_returns_the_stored_row(database: Database) -> None:
    product = await create(
        database, name="Зелёный Чай", price_cents=30, in_stock=False, description="Loose"
    )

    assert product == Product(
        id=product.id,
        name="Зелёный Чай",
        price_cents=30,
        in_stock=False,
        description="Loose",
        created_at=T0,
        updated_at=T0,
        version=1,
    )
    assert product.id >= 1
    assert await rows(database) == [
        {
            "id": product.id,
            "name": "Зелёный Чай",
            "name_folded": "зелёный чай",
            "price_cents": 30,
            "in_stock": 0,
            "description": "Loose",
            "created_at": T0,
            "updated_at": T0,
            "version": 1,
        }
    ]


async def test_create_defaults(database: Database) -> None:
    product = await create(database)
    assert product.in_stock is True
    assert product.description is None
    [row] = await rows(database)
    assert row["in_stock"] == 1
    assert row["description"] is None


async def test_name_folded_is_the_casefold_of_the_name(database: Database) -> None:
    for name in ("Straße", "ΣΊΣΥΦΟΣ", "ЁЛКА", "MiXeD 42"):
        await create(database, name=name)
    assert [(r["name"], r["name_folded"]) for r in await rows(database)] == [
        ("Straße", "strasse"),
        ("ΣΊΣΥΦΟΣ", "σίσυφοσ"),
        ("ЁЛКА", "ёлка"),
        ("MiXeD 42", "mixed 42"),
    ]


async def test_get_product(database: Database) -> None:
    created = await create(database, name="Coffee", price_cents=99_999_999_999_999)
    async with database.read() as conn:
        assert await products.get_product(conn, product_id=created.id) == created
        assert await products.get_product(conn, product_id=created.id + 1) is None
        assert await products.get_product(conn, product_id=2**63 - 1) is None


async def test_etag_is_strong_and_changes_with_the_version(database: Database) -> None:
    product = await create(database)
    assert product.etag == f'"{product.id}.1"'
    async with database.transaction() as conn:
        updated = await products.update_product(conn, current=product, changes={}, now=T1)
    assert updated.etag == f'"{product.id}.2"'
    assert updated.etag != product.etag


async def test_ids_increase_and_are_never_reused(database: Database) -> None:
    first = await create(database)
    second = await create(database)
    assert second.id == first.id + 1

    async with database.transaction() as conn:
        assert await products.delete_product(conn, product_id=second.id)
    third = await create(database)
    assert third.id == second.id + 1

    async with database.transaction() as conn:
        for product in (first, third):
            await products.delete_product(conn, product_id=product.id)
    assert await rows(database) == []
    assert (await create(database)).id == third.id + 1


async def test_query_functions_leave_the_unit_of_work_to_the_caller(database: Database) -> None:
    kept = await create(database, name="Kept")

    with pytest.raises(RuntimeError, match="abort"):
        async with database.transaction() as conn:
            await products.create_product(conn, name="Lost", price_cents=1, now=T1)
            await products.update_product(conn, current=kept, changes={"name": "Changed"}, now=T1)
            await products.delete_product(conn, product_id=kept.id)
            raise RuntimeError("abort")

    [row] = await rows(database)
    assert (row["id"], row["name"], row["version"]) == (kept.id, "Kept", 1)


@pytest.mark.parametrize(
    "fields",
    [
        {"price_cents": -1},
        {"price_cents": 100_000_000_000_000},
        {"name": "x"},
        {"name": "x" * 129},
        {"description": "x" * 5001},
    ],
)
async def test_the_table_refuses_what_validation_would(
    database: Database, fields: dict[str, Any]
) -> None:
    with pytest.raises(IntegrityError):
        await create(database, **fields)
    assert await rows(database) == []


# --- update / delete ----------------------------------------------------------------------------


async def test_update_changes_only_the_given_fields(database: Database) -> None:
    current = await create(database, name="Laptop", price_cents=100_000, description="14 inches")

    async with database.transaction() as conn:
        updated = await products.update_product(
            conn, current=current, changes={"price_cents": 5_000_000}, now=T1
        )

    assert updated == Product(
        id=current.id,
        name="Laptop",
        price_cents=5_000_000,
        in_stock=True,
        description="14 inches",
        created_at=T0,
        updated_at=T1,
        version=2,
    )
    [row] = await rows(database)
    assert (row["price_cents"], row["name"], row["description"]) == (
        5_000_000,
        "Laptop",
        "14 inches",
    )
    assert (row["created_at"], row["updated_at"], row["version"]) == (T0, T1, 2)


async def test_update_every_field(database: Database) -> None:
    current = await create(database, name="Tea", description="Green")
    async with database.transaction() as conn:
        updated = await products.update_product(
            conn,
            current=current,
            changes={"name": "КОФЕ", "price_cents": 0, "in_stock": False, "description": None},
            now=T1,
        )
    assert (updated.name, updated.price_cents, updated.in_stock, updated.description) == (
        "КОФЕ",
        0,
        False,
        None,
    )
    [row] = await rows(database)
    assert row["name_folded"] == "кофе"
    assert row["in_stock"] == 0
    assert row["description"] is None


async def test_update_touches_only_its_row(database: Database) -> None:
    target = await create(database, name="Target")
    other = await create(database, name="Other")
    async with database.transaction() as conn:
        await products.update_product(conn, current=target, changes={"name": "Renamed"}, now=T1)
    async with database.read() as conn:
        assert await products.get_product(conn, product_id=other.id) == other


async def test_delete_product(database: Database) -> None:
    gone = await create(database, name="Gone")
    kept = await create(database, name="Kept")

    async with database.transaction() as conn:
        assert await products.delete_product(conn, product_id=gone.id) is True
    async with database.transaction() as conn:
        assert await products.delete_product(conn, product_id=gone.id) is False
        assert await products.delete_product(conn, product_id=999) is False

    assert [row["id"] for row in await rows(database)] == [kept.id]


# --- list -------------------------------------------------------------------------------------


async def test_list_empty(database: Database) -> None:
    assert await page(database) == ([], 0)


async def test_list_skip_limit_and_count(database: Database) -> None:
    made = [(await create(database, name=f"Item {n}")).id for n in range(7)]

    assert await page(database) == (made, 7)
    assert await page(database, skip=2, limit=3) == (made[2:5], 7)
    assert await page(database, skip=6, limit=3) == (made[6:], 7)
    assert await page(database, skip=7) == ([], 7)
    assert await page(database, limit=1) == (made[:1], 7)


async def test_list_returns_whole_products(database: Database) -> None:
    created = await create(database, name="Tea", description="Green", in_stock=False)
    async with database.read() as conn:
        result = await products.list_products(
            conn, filters=ProductFilter(), sort="id", skip=0, limit=10
        )
    assert result.items == [created]
    assert result.count == 1


async def test_q_folds_every_script_and_keeps_wildcards_literal(database: Database) -> None:
    names = [
        "Чай зелёный",  # 0
        "Чай зеленый",  # 1
        "GREEN tea",  # 2
        "100% cotton",  # 3
        "snake_case",  # 4
        "snakeXcase",  # 5
        "STRASSE",  # 6
    ]
    made = [(await create(database, name=name)).id for name in names]

    def of(*positions: int) -> tuple[list[int], int]:
        return [made[p] for p in positions], len(positions)

    assert await page(database, q="ЗЕЛЁНЫЙ") == of(0)
    assert await page(database, q="чАй") == of(0, 1)
    assert await page(database, q="Green") == of(2)
    assert await page(database, q="%") == of(3)
    assert await page(database, q="_") == of(4)
    assert await page(database, q="e_c") == of(4)
    assert await page(database, q="Straße") == of(6)
    assert await page(database, q="") == of(*range(len(names)))
    assert await page(database, q="absent") == of()


async def test_price_range_is_inclusive(database: Database) -> None:
    made = [(await create(database, price_cents=c)).id for c in (0, 30, 100, 250, 1000)]

    assert await page(database, min_price_cents=100) == (made[2:], 3)
    assert await page(database, max_price_cents=100) == (made[:3], 3)
    assert await page(database, min_price_cents=30, max_price_cents=250) == (made[1:4], 3)
    assert await page(database, min_price_cents=30, max_price_cents=30) == (made[1:2], 1)
    assert await page(database, min_price_cents=0) == (made, 5)
    assert await page(database, max_price_cents=0) == (made[:1], 1)
    assert await page(database, min_price_cents=251, max_price_cents=999) == ([], 0)


async def test_in_stock_filter(database: Database) -> None:
    made = [(await create(database, in_stock=flag)).id for flag in (True, False, False, True)]
    assert await page(database, in_stock=True) == ([made[0], made[3]], 2)
    assert await page(database, in_stock=False) == ([made[1], made[2]], 2)
    assert await page(database, in_stock=None) == (made, 4)


async def test_filters_combine_and_count_ignores_the_page(database: Database) -> None:
    specs = [
        ("Green tea", 500, True),
        ("Black tea", 500, True),
        ("White tea", 5000, True),
        ("Oolong tea", 500, False),
        ("Coffee", 500, True),
        ("Mint tea", 100, True),
    ]
    made = [(await create(database, name=n, price_cents=c, in_stock=s)).id for n, c, s in specs]

    found = await page(
        database, q="TEA", min_price_cents=200, max_price_cents=1000, in_stock=True, limit=1
    )
    assert found == ([made[0]], 2)
    found = await page(
        database, q="TEA", min_price_cents=200, max_price_cents=1000, in_stock=True, skip=1
    )
    assert found == ([made[1]], 2)


SORT_NAMES = [
    ("banana", 300),
    ("apple", 100),
    ("cherry", 200),
    ("Apple", 300),
    ("Вишня", 200),
    ("арбуз", 100),
]


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("id", [0, 1, 2, 3, 4, 5]),
        ("-id", [5, 4, 3, 2, 1, 0]),
        ("name", [1, 3, 0, 2, 5, 4]),
        ("-name", [4, 5, 2, 0, 1, 3]),
        ("price", [1, 5, 2, 4, 0, 3]),
        ("-price", [0, 3, 2, 4, 1, 5]),
    ],
)
async def test_every_sort_order(database: Database, sort: str, order: list[int]) -> None:
    made = [(await create(database, name=n, price_cents=c)).id for n, c in SORT_NAMES]
    assert await page(database, sort=sort) == ([made[i] for i in order], len(made))


async def test_sort_orders_cover_the_contract() -> None:
    assert set(SORT_ORDERS) == {"id", "-id", "name", "-name", "price", "-price"}


async def test_sorted_pages_are_consistent(database: Database) -> None:
    # Many ties: pages taken with skip/limit must join up to the full order, no row twice.
    for n, price in zip(range(12), itertools.cycle((100, 200, 100)), strict=False):
        await create(database, name=f"Same {n % 2}", price_cents=price)
    for sort in SORT_ORDERS:
        whole, _ = await page(database, sort=sort)
        pieces = [(await page(database, sort=sort, skip=s, limit=5))[0] for s in (0, 5, 10)]
        assert list(itertools.chain(*pieces)) == whole, sort
        assert len(set(whole)) == 12
