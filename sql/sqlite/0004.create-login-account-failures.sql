-- Failed logins per account, from every address: past LOGIN_MAX_FAILURES in the window,
-- each further failure makes the account wait a delay that doubles, up to
-- LOGIN_ACCOUNT_MAX_DELAY_SECONDS (service/accounts/throttle.py). `username` is the
-- throttle's name (a username in lower case, or `#` and an HMAC), as in login_failures.

CREATE TABLE login_account_failures (
    username TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    window_started_at REAL NOT NULL,
    last_failure_at REAL NOT NULL
);
