-- Password reset and email verification, and the mail outbox that carries their links.
-- users.email_verified: false for every existing row; false again when the email changes.
-- account_tokens keeps only the SHA-256 of each reset or verification token, with the
-- user's token_version when it was issued (a password change by any path bumps that, so
-- the token dies) and, for a verification, the address it proves.
-- outbox holds each message, written in the unit of work that made its token, until a
-- sender delivers it: pending rows are claimed by pushing next_attempt_at forward (a
-- lease), so a sender that dies mid-send leaves its message to be retried.

-- No CHECK on the added column: SQLite would verify the existing rows with a SELECT
-- whose result yoyo prints on every `yoyo apply` and `create-superuser`.
ALTER TABLE users ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0;

CREATE INDEX users_by_email ON users (lower(email));

CREATE TABLE account_tokens (
    token_hash TEXT PRIMARY KEY,
    purpose TEXT NOT NULL CHECK (purpose IN ('reset_password', 'verify_email')),
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_version INTEGER NOT NULL,
    email TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);

CREATE INDEX account_tokens_by_user ON account_tokens (user_id, purpose, created_at);
CREATE INDEX account_tokens_by_expiry ON account_tokens (expires_at);

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    finished_at REAL
);

CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_finished ON outbox (finished_at);
