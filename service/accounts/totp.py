"""Two-factor authentication (TOTP, RFC 6238: SHA-1, 6 digits, 30 s) and recovery codes.

- Enrollment: the password (counted like a password change's current one) gives a
  pending secret; a pending one is replaced by the next, an enabled one never (409).
- Confirmation with a current code turns it on, hands out RECOVERY_CODES single-use
  codes once, and ends the user's other sessions.
- A code is a current TOTP code (one step either side) or an unused recovery code. A TOTP
  code is accepted once: only for a step later than the last accepted one. A recovery
  code is deleted as it is spent. Both are single conditional statements, so they hold
  without any lock (service/queries/totp.py).
- Wrong codes on the caller's own routes count per user like wrong current passwords:
  past LOGIN_MAX_FAILURES the check is refused and the asking session ends.
- A password reset by email leaves TOTP on (service/accounts/recovery.py never touches
  it); only the user himself (password and code) or a superuser turns it off.
- Every unit of work that changes a user's TOTP state locks his row first (FOR UPDATE),
  before his secret, recovery codes or second-step challenges, as the login's second
  step does (service/db/interface.py's lock order): no two of them deadlock on
  PostgreSQL, and each sees the one before it committed (a disable never races a
  replacement of the recovery codes into "off, with live codes").
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from dataclasses import dataclass

import pyotp
import qrcode
import qrcode.image.svg
from loguru import logger

from service.accounts import throttle, users
from service.accounts.context import Accounts
from service.accounts.errors import (
    CodeChecksLocked,
    InvalidCode,
    OwnTotpResetRefused,
    TotpAlreadyEnabled,
    TotpNotEnabled,
    TotpNotPending,
    UserNotFound,
)
from service.db import Connection
from service.queries import mfa_challenges, sessions
from service.queries import totp as totp_queries
from service.queries import users as user_queries
from service.queries.users import User
from service.totp_crypto import Sealed, SecretUnreadable, TotpKeys

STEP_SECONDS = 30
DIGITS = 6
RECOVERY_CODES = 10
# Recovery codes: 10 characters of this alphabet (~46 bits), shown as xxxxx-xxxxx. No
# digits, so a recovery code is never mistaken for a TOTP code, and none of l, o.
_RECOVERY_ALPHABET = "abcdefghijkmnpqrstuvwxyz"
_RECOVERY_LENGTH = 10


@dataclass(frozen=True, slots=True)
class Enrollment:
    secret: str  # base32, for typing into an authenticator by hand
    otpauth_uri: str
    qr_svg: str


async def enroll(accounts: Accounts, *, me: User, session: str, password: str) -> Enrollment:
    """A pending secret for the caller (replacing a pending one); TotpAlreadyEnabled if on."""
    if me.totp_enabled:
        raise TotpAlreadyEnabled
    await users.check_current_password(accounts, me=me, session=session, password=password)
    secret = pyotp.random_base32()  # 160 bits, as RFC 4226 recommends
    sealed = _keys(accounts).seal(secret, user_id=me.id)
    async with accounts.database.transaction() as conn:
        # The user's row first, as every TOTP change: and a user deleted meanwhile is a
        # refusal here, not a foreign-key violation (a 500) at the insert.
        if await user_queries.get_for_update(conn, user_id=me.id) is None:
            raise UserNotFound
        stored = await totp_queries.store_pending(
            conn,
            user_id=me.id,
            ciphertext=sealed.ciphertext,
            key_id=sealed.key_id,
            now=accounts.clock(),
        )
    if not stored:  # enabled meanwhile, by a confirmation from another session
        raise TotpAlreadyEnabled
    uri = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=me.username, issuer_name=accounts.settings.totp_issuer
    )
    # ~35 ms of pure Python: off the event loop, which serves every other request meanwhile.
    qr_svg = await asyncio.to_thread(_qr_svg, uri)
    return Enrollment(secret=secret, otpauth_uri=uri, qr_svg=qr_svg)


async def confirm(accounts: Accounts, *, me: User, session: str, code: str) -> list[str]:
    """Turn the pending secret on with a current code: the new recovery codes.

    InvalidCode for a wrong code; TotpNotPending with nothing to confirm.
    """
    if me.totp_enabled:  # before the count: a 409 is no wrong code
        raise TotpAlreadyEnabled
    async with accounts.database.read() as conn:  # nor is "nothing to confirm"
        if await totp_queries.get_secret(conn, user_id=me.id) is None:
            raise TotpNotPending
    await _count_code_check(accounts, me, session=session)
    codes = _new_recovery_codes()
    keys = _keys(accounts)
    async with accounts.database.transaction() as conn:
        await user_queries.get_for_update(conn, user_id=me.id)  # the lock order, see below
        stored = await totp_queries.get_secret(conn, user_id=me.id)
        if stored is not None and stored.enabled:
            raise TotpAlreadyEnabled
        if stored is None:
            raise TotpNotPending
        step = _matching_step(_open(keys, stored, me.id), code, accounts.clock())
        enabled = step is not None and await totp_queries.enable(
            conn, user_id=me.id, ciphertext=stored.ciphertext, step=step
        )
        if enabled:
            await _store_recovery_codes(conn, keys, me.id, codes)
            await user_queries.set_totp_enabled(conn, user_id=me.id, enabled=True)
            await sessions.end_user_sessions(conn, user_id=me.id, keep=session)
            await throttle.clear(conn, throttle.totp_code_key(me.id))
    if not enabled:  # the failure counted before stays committed
        raise InvalidCode
    logger.info(f"two-factor authentication enabled for user {me.id}; his other sessions ended")
    return codes


async def disable(accounts: Accounts, *, me: User, session: str, password: str, code: str) -> None:
    """Turn the caller's TOTP off with his password and a code; recovery codes go too."""
    if not me.totp_enabled:
        raise TotpNotEnabled
    await users.check_current_password(accounts, me=me, session=session, password=password)
    await _count_code_check(accounts, me, session=session)
    async with accounts.database.transaction() as conn:
        # The user's row first (see the module's docstring): waits for a replacement of
        # the recovery codes in flight, which then dies with the rest.
        await user_queries.get_for_update(conn, user_id=me.id)
        accepted = await spend_code(conn, accounts, user_id=me.id, code=code)
        if accepted:
            await _turn_off(conn, me.id)
            await throttle.clear(conn, throttle.totp_code_key(me.id))
    if not accepted:
        raise InvalidCode
    logger.info(f"two-factor authentication disabled by user {me.id}")


async def new_recovery_codes(accounts: Accounts, *, me: User, session: str, code: str) -> list[str]:
    """Ten new recovery codes for a code; the old ones die."""
    if not me.totp_enabled:
        raise TotpNotEnabled
    await _count_code_check(accounts, me, session=session)
    codes = _new_recovery_codes()
    async with accounts.database.transaction() as conn:
        # One replacement at a time per user: two at once (two good codes) would each
        # delete only the codes committed before them, and both sets would live.
        await user_queries.get_for_update(conn, user_id=me.id)
        accepted = await spend_code(conn, accounts, user_id=me.id, code=code)
        if accepted:
            await _store_recovery_codes(conn, _keys(accounts), me.id, codes)
            await throttle.clear(conn, throttle.totp_code_key(me.id))
    if not accepted:
        raise InvalidCode
    logger.info(f"new recovery codes for user {me.id}; the old ones died")
    return codes


async def reset_for_user(accounts: Accounts, *, by: User, user_id: int) -> None:
    """A superuser turns a user's TOTP off (device and codes lost); his sessions end.

    Not his own (OwnTotpResetRefused): a stolen access token alone must not strip the
    second factor; DELETE /users/me/totp asks for his password and a code.
    """
    if user_id == by.id:
        raise OwnTotpResetRefused
    async with accounts.database.transaction() as conn:
        if await user_queries.get_for_update(conn, user_id=user_id) is None:
            raise UserNotFound
        await _turn_off(conn, user_id)
        await sessions.end_user_sessions(conn, user_id=user_id, keep=None)
    logger.warning(
        f"two-factor authentication of user {user_id} removed by superuser {by.id}; "
        "his sessions ended"
    )


async def spend_code(conn: Connection, accounts: Accounts, *, user_id: int, code: str) -> bool:
    """Accept a current TOTP code or an unused recovery code once, in the caller's unit of work.

    False for anything else: a wrong code, one already used, or no TOTP enabled.
    """
    recovery = _normal_recovery_code(code)
    if recovery is not None:
        code_hash = _keys(accounts).code_hash(recovery)
        return await totp_queries.spend_recovery_code(conn, user_id=user_id, code_hash=code_hash)
    stored = await totp_queries.get_secret(conn, user_id=user_id)
    if stored is None or not stored.enabled:
        return False
    step = _matching_step(_open(_keys(accounts), stored, user_id), code, accounts.clock())
    return step is not None and await totp_queries.spend_step(conn, user_id=user_id, step=step)


def _matching_step(secret: str | None, code: str, now: float) -> int | None:
    """The 30 s step (now, or one either side) whose code `code` is, or None."""
    typed = code.replace(" ", "")
    if secret is None or len(typed) != DIGITS or not (typed.isascii() and typed.isdigit()):
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = int(now) // STEP_SECONDS
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), typed):
            return step
    return None


def _open(keys: TotpKeys, stored: totp_queries.StoredSecret, user_id: int) -> str | None:
    """The secret in clear; None (no code matches it) if SECRET_KEY changed since."""
    try:
        return keys.open(Sealed(stored.ciphertext, stored.key_id), user_id=user_id)
    except SecretUnreadable as error:
        logger.warning(
            f"the TOTP secret of user {user_id} cannot be opened ({error}): see the README "
            "on rotating SECRET_KEY"
        )
        return None


def _normal_recovery_code(code: str) -> str | None:
    """The code as stored if it has a recovery code's shape (any case, `-` and spaces)."""
    typed = code.replace("-", "").replace(" ", "").lower()
    if len(typed) != _RECOVERY_LENGTH or not all(ch in _RECOVERY_ALPHABET for ch in typed):
        return None
    return typed


def _new_recovery_codes() -> list[str]:
    codes = ["".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))]
    while len(codes) < RECOVERY_CODES:
        code = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        if code not in codes:
            codes.append(code)
    return [f"{code[:5]}-{code[5:]}" for code in codes]


async def _store_recovery_codes(
    conn: Connection, keys: TotpKeys, user_id: int, codes: list[str]
) -> None:
    hashes = [keys.code_hash(code.replace("-", "")) for code in codes]
    await totp_queries.replace_recovery_codes(conn, user_id=user_id, code_hashes=hashes)


async def _turn_off(conn: Connection, user_id: int) -> None:
    """No secret, no recovery codes, no pending second step: logins need a password only.

    The caller has locked the user's row first.
    """
    await totp_queries.delete_secret(conn, user_id=user_id)
    await totp_queries.delete_recovery_codes(conn, user_id=user_id)
    await mfa_challenges.delete_of_user(conn, user_id=user_id)
    await user_queries.set_totp_enabled(conn, user_id=user_id, enabled=False)


async def _count_code_check(accounts: Accounts, me: User, *, session: str) -> None:
    """Count a code check before it is made (cleared on success), as current passwords are.

    Past LOGIN_MAX_FAILURES wrong codes: CodeChecksLocked, and the asking session ends,
    so a stolen access token cannot try the million codes.
    """
    key = throttle.totp_code_key(me.id)
    wait = await throttle.count_user_check(
        accounts.database, accounts.settings, key, session=session, now=accounts.clock()
    )
    if wait:
        # INFO: the middleware warns of the 429 itself; this line adds the session's end.
        logger.info(f"too many wrong TOTP codes for user {me.id}: his session ended")
        raise CodeChecksLocked(wait)


def _keys(accounts: Accounts) -> TotpKeys:
    return TotpKeys.derive(accounts.token_key)


def _qr_svg(uri: str) -> str:
    """The otpauth URI as a QR code in SVG, made here: the secret goes to no image service."""
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage)
    return str(image.to_string(encoding="unicode"))
