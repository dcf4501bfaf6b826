"""What the account rules work with, built once per app (keys.ACCOUNTS) or by hand in tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from service.db import Database
from service.passwords import PasswordHasher
from service.settings import Settings


@dataclass(frozen=True, slots=True)
class Accounts:
    database: Database
    passwords: PasswordHasher
    settings: Settings
    # Signs access tokens and keys the throttle's non-usernames: kept out of repr().
    token_key: str = field(repr=False)
    # Called once a unit of work that queued mail has committed: wakes this process's
    # sender, so the message goes now rather than at its next poll.
    mail_queued: Callable[[], None] = lambda: None
    # What time it is, for TOTP codes, second-factor challenges and the throttle's windows:
    # tests inject their own (and compute real codes with pyotp at it).
    clock: Callable[[], float] = time.time


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, as the HTTP layer saw him: for the session row and the throttle.

    (The log has the request id and client from the request's context: see middlewares.)
    """

    address: str | None
    user_agent: str
