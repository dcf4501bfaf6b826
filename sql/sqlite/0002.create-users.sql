-- Users. Usernames are ASCII (A-Z a-z 0-9 _ . -), so NOCASE makes them unique and
-- matched case-insensitively. token_version is copied into every access token; bumping
-- it (password change) refuses older tokens even within the same second.
-- login_failures counts failed logins per (username, client address) for throttling,
-- in the database so that it survives restarts and is shared by worker processes.

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL COLLATE NOCASE UNIQUE CHECK (length(username) BETWEEN 2 AND 64),
    email TEXT,
    full_name TEXT,
    hashed_password TEXT NOT NULL,
    is_active INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    is_superuser INTEGER NOT NULL DEFAULT 0 CHECK (is_superuser IN (0, 1)),
    token_version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE login_failures (
    username TEXT NOT NULL,
    client TEXT NOT NULL,
    failures INTEGER NOT NULL,
    window_started_at REAL NOT NULL,
    PRIMARY KEY (username, client)
);
