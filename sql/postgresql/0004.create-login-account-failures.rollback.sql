DROP TABLE login_account_failures;
