-- Login sessions: each login opens one; its refresh token rotates on every use.
-- Only SHA-256 hashes of refresh tokens are stored. A spent token's hash stays in
-- spent_refresh_tokens while its session lives, so that presenting it again is
-- recognised as theft and ends the session. Rows go when the session is purged.

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    last_used_at TEXT NOT NULL,
    expires_at REAL NOT NULL,
    ended_at TEXT,
    user_agent TEXT,
    client TEXT
);

CREATE INDEX sessions_by_user ON sessions (user_id, ended_at);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE spent_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE
);

CREATE INDEX spent_refresh_tokens_by_session ON spent_refresh_tokens (session_id);
