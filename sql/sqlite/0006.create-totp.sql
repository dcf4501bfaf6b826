-- Two-factor login (TOTP, RFC 6238) with recovery codes.
-- users.totp_enabled: whether a login needs a second factor; written in the same unit of
-- work as totp_secrets.enabled, and read with the user wherever he is (representations,
-- the login's verdict, REQUIRE_TOTP_FOR_SUPERUSERS).
-- totp_secrets: one per user, pending until confirmed with a code (enabled). The secret is
-- AES-GCM ciphertext under a key derived from SECRET_KEY (key_id names that key): a dump
-- alone yields no secret. last_used_step is the newest 30 s step a code was accepted for:
-- a code is accepted only for a later step, so none is replayed inside its window.
-- totp_recovery_codes: keyed hashes (HMAC under a key derived from SECRET_KEY) of the
-- unused recovery codes; spending one deletes its row.
-- mfa_challenges: the login's second step. Only the SHA-256 of each mfa_token is kept,
-- bound to the user's token_version and password hash (a fingerprint of it) when issued.

-- No CHECK on the added column: SQLite would verify the existing rows with a SELECT
-- whose result yoyo prints on every `yoyo apply` and `create-superuser`.
ALTER TABLE users ADD COLUMN totp_enabled INTEGER NOT NULL DEFAULT 0;

CREATE TABLE totp_secrets (
    user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    ciphertext TEXT NOT NULL,
    key_id TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 0 CHECK (enabled IN (0, 1)),
    last_used_step INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);

CREATE TABLE totp_recovery_codes (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE mfa_challenges (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_version INTEGER NOT NULL,
    password_fingerprint TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);

CREATE INDEX mfa_challenges_by_user ON mfa_challenges (user_id);
CREATE INDEX mfa_challenges_by_expiry ON mfa_challenges (expires_at);
