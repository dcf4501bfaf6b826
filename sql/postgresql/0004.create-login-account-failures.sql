-- Failed logins per account, from every address, as in sql/sqlite/0004.

CREATE TABLE login_account_failures (
    username TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    window_started_at DOUBLE PRECISION NOT NULL,
    last_failure_at DOUBLE PRECISION NOT NULL
);
