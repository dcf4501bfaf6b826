-- Login sessions and spent refresh-token hashes, as in sql/sqlite/0003. COLLATE "C" on
-- the columns sessions are listed by keeps SQLite's order (by code point).

CREATE TABLE sessions (
    id TEXT COLLATE "C" PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT COLLATE "C" NOT NULL,
    last_used_at TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    ended_at TEXT,
    user_agent TEXT,
    client TEXT
);

CREATE INDEX sessions_by_user ON sessions (user_id, ended_at);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE spent_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE
);

CREATE INDEX spent_refresh_tokens_by_session ON spent_refresh_tokens (session_id);
