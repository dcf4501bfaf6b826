"""SQL for products. The caller owns the unit of work: nothing here BEGINs or COMMITs."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import aiosqlite

from service.clock import utc_now
from service.db import rows_changed


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

# Filter fragments, combined with AND; instr() keeps `%` and `_` literal.
_FILTERS: Final[dict[str, str]] = {
    "q": "instr(name_folded, :q) > 0",
    "min_price_cents": "price_cents >= :min_price_cents",
    "max_price_cents": "price_cents <= :max_price_cents",
    "in_stock": "in_stock = :in_stock",
}


async def get_product(conn: aiosqlite.Connection, *, product_id: int) -> Product | None:
    """The product with `product_id`, or None."""
    rows = await conn.execute_fetchall(SELECT_PRODUCT, {"id": product_id})
    return _product(next(iter(rows))) if rows else None


async def list_products(
    conn: aiosqlite.Connection,
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
    where = " AND ".join(_FILTERS[name] for name in used) or "1"
    page_sql = (
        f"SELECT {_COLUMNS} FROM products WHERE {where} "
        f"ORDER BY {SORT_ORDERS[sort]} LIMIT :limit OFFSET :skip"
    )
    rows = await conn.execute_fetchall(page_sql, {**used, "limit": limit, "skip": skip})
    count_rows = await conn.execute_fetchall(f"SELECT count(*) FROM products WHERE {where}", used)
    return ProductPage(items=[_product(row) for row in rows], count=next(iter(count_rows))[0])


async def create_product(
    conn: aiosqlite.Connection,
    *,
    name: str,
    price_cents: int,
    in_stock: bool = True,
    description: str | None = None,
) -> Product:
    """Insert a product and return it with its new id."""
    rows = await conn.execute_fetchall(
        INSERT_PRODUCT,
        {
            "name": name,
            "name_folded": name.casefold(),
            "price_cents": price_cents,
            "in_stock": in_stock,
            "description": description,
            "now": utc_now(),
        },
    )
    return _product(next(iter(rows)))


async def update_product(
    conn: aiosqlite.Connection, *, current: Product, changes: Mapping[str, object]
) -> Product:
    """Apply `changes` (any of name, price_cents, in_stock, description) to `current`."""
    merged = {
        "name": changes.get("name", current.name),
        "price_cents": changes.get("price_cents", current.price_cents),
        "in_stock": changes.get("in_stock", current.in_stock),
        "description": changes.get("description", current.description),
    }
    rows = await conn.execute_fetchall(
        UPDATE_PRODUCT,
        {
            **merged,
            "id": current.id,
            "name_folded": str(merged["name"]).casefold(),
            "now": utc_now(),
        },
    )
    return _product(next(iter(rows)))


async def delete_product(conn: aiosqlite.Connection, *, product_id: int) -> bool:
    """Delete the product; False if there was none."""
    return await rows_changed(conn, DELETE_PRODUCT, {"id": product_id}) > 0


def _product(row: sqlite3.Row) -> Product:
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
