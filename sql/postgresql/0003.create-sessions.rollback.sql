DROP TABLE spent_refresh_tokens;
DROP TABLE sessions;
