-- Users and login throttling, as in sql/sqlite/0002. SQLite's COLLATE NOCASE becomes a
-- unique index on lower(username COLLATE "C"), which folds ASCII only, as NOCASE does,
-- whatever the database's locale (under a Turkish one, plain lower('ADMIN') is 'admın').
-- service/dialect.py matches usernames with the same expression, so the index serves it.

CREATE TABLE users (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username TEXT NOT NULL CHECK (char_length(username) BETWEEN 2 AND 64),
    email TEXT,
    full_name TEXT,
    hashed_password TEXT NOT NULL,
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    is_superuser BOOLEAN NOT NULL DEFAULT FALSE,
    token_version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE UNIQUE INDEX users_username_key ON users (lower(username COLLATE "C"));

CREATE TABLE login_failures (
    username TEXT NOT NULL,
    client TEXT NOT NULL,
    failures INTEGER NOT NULL,
    window_started_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (username, client)
);
