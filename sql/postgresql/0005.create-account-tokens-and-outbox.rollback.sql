DROP TABLE outbox;
DROP TABLE account_tokens;
DROP INDEX users_by_email;
ALTER TABLE users DROP COLUMN email_verified;
