-- Products, as in sql/sqlite/0001 (read it for the why of each column), in PostgreSQL's
-- types: an identity column (its sequence never gives a deleted product's id again),
-- BOOLEAN, BIGINT cents. COLLATE "C" sorts name_folded by code point, as SQLite does,
-- whatever the database's default collation.

CREATE TABLE products (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL CHECK (char_length(name) BETWEEN 2 AND 128),
    name_folded TEXT COLLATE "C" NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents BETWEEN 0 AND 99999999999999),
    in_stock BOOLEAN NOT NULL DEFAULT TRUE,
    description TEXT CHECK (description IS NULL OR char_length(description) <= 5000),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);

CREATE INDEX products_by_name ON products (name_folded, id);
CREATE INDEX products_by_price ON products (price_cents, id);
