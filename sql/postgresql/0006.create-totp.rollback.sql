DROP TABLE mfa_challenges;
DROP TABLE totp_recovery_codes;
DROP TABLE totp_secrets;
ALTER TABLE users DROP COLUMN totp_enabled;
