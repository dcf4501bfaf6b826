"""Access tokens (HS256 JWTs: user id, token version, session id) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from loguru import logger

from service.ids import parse_id

ALGORITHM = "HS256"
_jwt = jwt.PyJWT(options={"enforce_minimum_key_length": True})


class InvalidToken(Exception):
    """The token is malformed, expired, wrongly signed or lacks a required claim."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    token_version: int
    session_id: str


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int


def issue(
    *, user_id: int, token_version: int, session_id: str, key: str, lifetime_seconds: int
) -> IssuedToken:
    """A signed access token for the user's session, valid for `lifetime_seconds`."""
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "ver": token_version,
        "sid": session_id,
        "iat": now,
        "exp": now + lifetime_seconds,
    }
    return IssuedToken(_jwt.encode(claims, key, algorithm=ALGORITHM), lifetime_seconds)


# Tokens already verified, with their expiry: a client sends the same token with every
# request, and checking its signature again costs more than the rest of a simple request.
# Only tokens that passed every check are kept; an expired one is dropped on its next use.
_VERIFIED_MAX = 4096
_verified: dict[tuple[str, str], tuple[AccessClaims, int]] = {}


def decode(token: str, *, key: str) -> AccessClaims:
    """The claims of a valid token; InvalidToken for anything else."""
    cached = _verified.get((key, token))
    if cached is not None:
        claims, expires_at = cached
        if time.time() < expires_at:
            return claims
        del _verified[(key, token)]
    claims, expires_at = _verify(token, key)
    if len(_verified) >= _VERIFIED_MAX:
        del _verified[next(iter(_verified))]  # the oldest entry
    _verified[(key, token)] = (claims, expires_at)
    return claims


def _verify(token: str, key: str) -> tuple[AccessClaims, int]:
    if not token.isascii():  # PyJWT would raise UnicodeEncodeError, not a PyJWTError
        raise InvalidToken("non-ASCII")
    try:
        claims = _jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "iat", "exp", "ver", "sid"]},
        )
    except jwt.PyJWTError as error:  # InvalidKeyError is not an InvalidTokenError
        raise InvalidToken(type(error).__name__) from None
    subject, version = claims["sub"], claims["ver"]
    # A user id as issue() writes it: str.isdigit() would pass "²" (a 500) and "١" (user 1).
    user_id = parse_id(subject) if isinstance(subject, str) else None
    if user_id is None:
        raise InvalidToken("sub")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidToken("ver")
    if not isinstance(claims["sid"], str):
        raise InvalidToken("sid")
    access = AccessClaims(user_id=user_id, token_version=version, session_id=claims["sid"])
    return access, int(claims["exp"])


def new_session_id() -> str:
    """A session's public, opaque id (the `sid` claim)."""
    return secrets.token_urlsafe(16)


def new_refresh_token() -> str:
    """An opaque refresh token: 256 random bits."""
    return secrets.token_urlsafe(32)


def is_refresh_token_shaped(token: str) -> bool:
    """Whether `token` could be one new_refresh_token made (43 base64url characters)."""
    return _REFRESH_TOKEN_SHAPE.fullmatch(token) is not None


_REFRESH_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def token_digest(token: str) -> str:
    """What the database keeps of an opaque token (refresh, mfa, emailed link): its SHA-256.

    The tokens are random, so no salt is needed.
    """
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class KeyFileError(Exception):
    """The key file is unsafe or unreadable: the service must not start with it."""


def key_file_of(database_path: Path) -> Path:
    """Where the generated key is kept when SECRET_KEY is not set."""
    return database_path.with_name(database_path.name + ".secret_key")


def check_key_file(key_file: Path) -> None:
    """KeyFileError if `key_file` exists and another user owns it or may read it.

    Anyone who reads the key can sign an access token for any user; a file another user
    owns may hold a key that user chose.
    """
    try:
        status = key_file.stat()
    except FileNotFoundError:
        return
    if status.st_uid != os.geteuid():
        raise KeyFileError(
            f"{key_file} is owned by uid {status.st_uid}, not by this user (uid "
            f"{os.geteuid()}): chown it, or delete it to generate a new key"
        )
    if stat.S_IMODE(status.st_mode) & 0o077:
        raise KeyFileError(
            f"{key_file} is open to other users (mode {stat.S_IMODE(status.st_mode):04o}): "
            f"run `chmod 600 {key_file}`, or delete it to generate a new key"
        )


def load_or_create_key(configured: str | None, database_path: Path) -> str:
    """SECRET_KEY if set; else a random key kept in an owner-only file beside the database.

    KeyFileError if that file is not owner-only (check_key_file).
    """
    if configured is not None:
        return configured
    key_file = key_file_of(database_path)
    check_key_file(key_file)
    try:
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key_file(key_file)
    key = secrets.token_hex(32)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(key)
    logger.warning(
        f"SECRET_KEY is not set: generated one into {key_file} (owner-only). "
        "Set SECRET_KEY to share one key between machines."
    )
    return key


def _read_key_file(key_file: Path) -> str:
    # Another worker may have created the file a moment ago and not written it yet.
    for _ in range(50):
        key = key_file.read_text(encoding="ascii").strip()
        if key:
            break
        time.sleep(0.05)
    if len(key) < 32:
        raise ValueError(
            f"{key_file} holds a key shorter than 32 bytes; delete it or set SECRET_KEY"
        )
    return key
