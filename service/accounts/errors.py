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


class TwoFactorRequired(AccountError):
    """REQUIRE_TOTP_FOR_SUPERUSERS is on: a superuser without TOTP has no superuser powers."""


class UserNotFound(AccountError):
    """No user with that id or name."""


class UsernameTaken(AccountError):
    """Another user has that username (compared ignoring case)."""


class SelfDeleteRefused(AccountError):
    """A superuser cannot delete himself."""


class OwnTotpResetRefused(AccountError):
    """A superuser cannot remove his own TOTP on the superuser route: that needs his code."""


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


class SecondFactorRequired(AccountError):
    """The right password of a user with TOTP on: the login continues at /login/mfa."""

    def __init__(self, mfa_token: str) -> None:
        super().__init__("second factor required")  # never the token: errors reach logs
        self.mfa_token = mfa_token


class InvalidMfaToken(AccountError):
    """An mfa_token that is unknown, expired, used, dead of wrong codes, or outdated."""


class IncorrectLoginCode(AccountError):
    """A wrong second factor at login (counted against the mfa_token and the throttle)."""


class InvalidCode(AccountError):
    """A wrong TOTP or recovery code on the caller's own TOTP routes."""


class CodeChecksLocked(AccountError):
    """Too many wrong codes on the caller's TOTP routes: the asking session ended."""

    def __init__(self, seconds: int) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class TotpAlreadyEnabled(AccountError):
    """The caller's TOTP is on already: disable it first."""


class TotpNotEnabled(AccountError):
    """The caller has no TOTP on."""


class TotpNotPending(AccountError):
    """No enrollment to confirm (none started, or replaced meanwhile)."""
