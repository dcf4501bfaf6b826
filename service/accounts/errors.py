"""What the account rules refuse. `service.errors.as_api_error` maps each to its answer."""

from __future__ import annotations


class AccountError(Exception):
    """An account rule refused the request."""


class IncorrectLogin(AccountError):
    """Unknown username or wrong password: one error for both, so neither is revealed."""


class LoginLocked(AccountError):
    """Too many failed logins for this (username, client): wait `seconds`."""

    def __init__(self, seconds: int) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class InactiveUser(AccountError):
    """The right credentials of a deactivated user."""


class InvalidRefreshToken(AccountError):
    """Unknown, spent, expired or ended: the refresh token refreshes nothing."""


class SignupClosed(AccountError):
    """OPEN_SIGNUP is off."""


class NotAllowed(AccountError):
    """The caller may not do this to that user."""


class UserNotFound(AccountError):
    """No user with that id or name."""


class UsernameTaken(AccountError):
    """Another user has that username (compared ignoring case)."""


class SelfDeleteRefused(AccountError):
    """A superuser cannot delete himself."""


class LastSuperuser(AccountError):
    """The change would leave no active superuser."""


class CurrentPasswordRequired(AccountError):
    """Changing one's own password needs the current one."""


class IncorrectPassword(AccountError):
    """The current password given does not match."""


class PasswordChecksLocked(AccountError):
    """Too many wrong current passwords for this user: the asking session ended."""

    def __init__(self, seconds: int) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class SessionNotFound(AccountError):
    """Not one of the caller's open sessions."""


class InvalidAccountToken(AccountError):
    """A reset or verification token that is unknown, used, expired, malformed or stale."""


class TooManyRequests(AccountError):
    """Too many recovery requests for this address or from this client: wait `seconds`."""

    def __init__(self, seconds: int) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class NoEmail(AccountError):
    """The account has no email address to verify."""


class EmailAlreadyVerified(AccountError):
    """The account's address is verified already."""


class EmailNotVerified(AccountError):
    """REQUIRE_VERIFIED_EMAIL is on and the right credentials' address is not verified."""


class EmailRequired(AccountError):
    """REQUIRE_VERIFIED_EMAIL is on: signing up needs an email address."""
