"""SQL for products. The caller owns the unit of work: nothing here BEGINs or COMMITs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from service.db import Connection, Row, returned
from service.db.dialect import contains, for_update


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    name: str
    price_cents: int
    in_stock: bool
    description: str | None
    created_at: str
    updated_at: str
    version: int

    @property
    def etag(self) -> str:
        """A strong entity tag: it changes with every update of the row."""
        return f'"{self.id}.{self.version}"'


@dataclass(frozen=True, slots=True)
class ProductFilter:
    q: str | None = None
    min_price_cents: int | None = None
    max_price_cents: int | None = None
    in_stock: bool | None = None


@dataclass(frozen=True, slots=True)
class ProductPage:
    items: list[Product]
    count: int


# sort key -> fixed ORDER BY fragment; a client's `sort` never reaches the SQL text.
SORT_ORDERS: Final[dict[str, str]] = {
    "id": "id",
    "-id": "id DESC",
    "name": "name_folded, id",
    "-name": "name_folded DESC, id",
    "price": "price_cents, id",
    "-price": "price_cents DESC, id",
}

_COLUMNS = "id, name, price_cents, in_stock, description, created_at, updated_at, version"

SELECT_PRODUCT = f"SELECT {_COLUMNS} FROM products WHERE id = :id"

INSERT_PRODUCT = f"""
INSERT INTO products (name, name_folded, price_cents, in_stock, description, created_at, updated_at)
VALUES (:name, :name_folded, :price_cents, :in_stock, :description, :now, :now)
RETURNING {_COLUMNS}
"""

UPDATE_PRODUCT = f"""
UPDATE products
SET name = :name, name_folded = :name_folded, price_cents = :price_cents,
    in_stock = :in_stock, description = :description, updated_at = :now, version = version + 1
WHERE id = :id
RETURNING {_COLUMNS}
"""

DELETE_PRODUCT = "DELETE FROM products WHERE id = :id"

# Filter fragments, combined with AND; `q` is the dialect's literal substring match.
_FILTERS: Final[dict[str, str]] = {
    "min_price_cents": "price_cents >= :min_price_cents",
    "max_price_cents": "price_cents <= :max_price_cents",
    "in_stock": "in_stock = :in_stock",
}


async def get_product(conn: Connection, *, product_id: int) -> Product | None:
    """The product with `product_id`, or None."""
    row = await conn.fetch_one(SELECT_PRODUCT, {"id": product_id})
    return None if row is None else _product(row)


async def get_for_update(conn: Connection, *, product_id: int) -> Product | None:
    """The product, or None; no other unit of work changes it until ours ends."""
    row = await conn.fetch_one(SELECT_PRODUCT + for_update(conn.dialect), {"id": product_id})
    return None if row is None else _product(row)


async def list_products(
    conn: Connection,
    *,
    filters: ProductFilter,
    sort: str,
    skip: int,
    limit: int,
) -> ProductPage:
    """A page of products matching `filters`, and how many match in all."""
    params: dict[str, object] = {
        "q": filters.q.casefold() if filters.q is not None else None,
        "min_price_cents": filters.min_price_cents,
        "max_price_cents": filters.max_price_cents,
        "in_stock": filters.in_stock,
    }
    used = {name: value for name, value in params.items() if value is not None}
    where = " AND ".join(_filter(conn, name) for name in used) or "TRUE"
    page_sql = (
        f"SELECT {_COLUMNS} FROM products WHERE {where} "
        f"ORDER BY {SORT_ORDERS[sort]} LIMIT :limit OFFSET :skip"
    )
    rows = await conn.fetch_all(page_sql, {**used, "limit": limit, "skip": skip})
    count = returned(await conn.fetch_one(f"SELECT count(*) FROM products WHERE {where}", used))
    return ProductPage(items=[_product(row) for row in rows], count=int(count[0]))


async def create_product(
    conn: Connection,
    *,
    name: str,
    price_cents: int,
    in_stock: bool = True,
    description: str | None = None,
    now: str,
) -> Product:
    """Insert a product, created and updated at `now`, and return it with its new id."""
    row = await conn.fetch_one(
        INSERT_PRODUCT,
        {
            "name": name,
            "name_folded": name.casefold(),
            "price_cents": price_cents,
            "in_stock": in_stock,
            "description": description,
            "now": now,
        },
    )
    return _product(returned(row))


async def update_product(
    conn: Connection, *, current: Product, changes: Mapping[str, object], now: str
) -> Product:
    """Apply `changes` (any of name, price_cents, in_stock, description) to `current` at `now`."""
    merged = {
        "name": changes.get("name", current.name),
        "price_cents": changes.get("price_cents", current.price_cents),
        "in_stock": changes.get("in_stock", current.in_stock),
        "description": changes.get("description", current.description),
    }
    row = await conn.fetch_one(
        UPDATE_PRODUCT,
        {
            **merged,
            "id": current.id,
            "name_folded": str(merged["name"]).casefold(),
            "now": now,
        },
    )
    return _product(returned(row))


async def delete_product(conn: Connection, *, product_id: int) -> bool:
    """Delete the product; False if there was none."""
    return await conn.execute(DELETE_PRODUCT, {"id": product_id}) > 0


def _filter(conn: Connection, name: str) -> str:
    return contains(conn.dialect, "name_folded", "q") if name == "q" else _FILTERS[name]


def _product(row: Row) -> Product:
    return Product(
        id=row["id"],
        name=row["name"],
        price_cents=row["price_cents"],
        in_stock=bool(row["in_stock"]),
        description=row["description"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
    )
