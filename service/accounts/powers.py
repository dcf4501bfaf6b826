"""Who may use a superuser's powers: one rule for the superuser routes and the account rules.

A superuser may act on other users (PATCH or GET another user, the superuser-only
routes) only if, with REQUIRE_TOTP_FOR_SUPERUSERS on, he has turned TOTP on: a stolen
password of a superuser without it must not carry his powers through any route.
"""

from __future__ import annotations

from service.accounts.errors import NotAllowed, TwoFactorRequired
from service.queries.users import User
from service.settings import Settings


def check_superuser_powers(settings: Settings, user: User) -> None:
    """NotAllowed for a regular user; TwoFactorRequired for a superuser still without TOTP."""
    if not user.is_superuser:
        raise NotAllowed
    if settings.require_totp_for_superusers and not user.totp_enabled:
        raise TwoFactorRequired
