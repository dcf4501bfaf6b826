"""The account rules: who may log in, sessions, passwords, users and the last superuser.

Routes call one function of these modules per request; nothing here knows HTTP. Each
function takes the `Accounts` it works with (context.py) and raises the domain errors of
errors.py, which `service.errors.as_api_error` turns into the contract's answers.

- context.py  `Accounts`: the database, the password hasher, the settings, the signing key
- errors.py   the refusals (`LastSuperuser`, `IncorrectLogin`, ...)
- login.py    authenticate, the login verdict, the tokens a login or refresh returns
- throttle.py failed logins per (username, client address), and the lockout
- sessions.py open, refresh (rotation and theft detection), list and end sessions
- users.py    create, change and delete users; password changes; the last-superuser rule
"""
