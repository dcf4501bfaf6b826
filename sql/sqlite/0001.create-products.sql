-- Products: the original system's name, price, in_stock, plus description.
-- price_cents is an exact integer (never a binary float); name_folded is name.casefold(),
-- kept by the query module, so that search and sorting fold every script, not just ASCII.
-- AUTOINCREMENT: a deleted product's id is never given to a new one.

CREATE TABLE products (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL CHECK (length(name) BETWEEN 2 AND 128),
    name_folded TEXT NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents BETWEEN 0 AND 99999999999999),
    in_stock INTEGER NOT NULL DEFAULT 1 CHECK (in_stock IN (0, 1)),
    description TEXT CHECK (description IS NULL OR length(description) <= 5000),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);

CREATE INDEX products_by_name ON products (name_folded, id);
CREATE INDEX products_by_price ON products (price_cents, id);
