"""TOTP secrets at rest and recovery codes: crypto without policy.

Both keys are derived from SECRET_KEY with HKDF-SHA256, each for its one purpose: a
database dump alone yields no secret and no code. A secret is sealed with AES-GCM under
a random nonce, bound to its user (associated data), so a ciphertext copied onto another
user's row does not open. `key_id` names the key that sealed it: after SECRET_KEY
changes, an old secret is recognised as such rather than failing as if tampered with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE_BYTES = 12


class SecretUnreadable(Exception):
    """The sealed secret was made under another SECRET_KEY, or altered."""


@dataclass(frozen=True, slots=True)
class Sealed:
    ciphertext: str  # base64url of nonce + AES-GCM output
    key_id: str


@dataclass(frozen=True, slots=True)
class TotpKeys:
    """The keys derived from one SECRET_KEY (cheap: derive them where needed)."""

    encryption: bytes = field(repr=False)
    recovery: bytes = field(repr=False)
    key_id: str

    @classmethod
    def derive(cls, secret_key: str) -> TotpKeys:
        material = secret_key.encode()
        return cls(
            encryption=_hkdf(material, b"totp-secret-encryption v1", 32),
            recovery=_hkdf(material, b"totp-recovery-codes v1", 32),
            key_id=_hkdf(material, b"totp-key-id v1", 8).hex(),
        )

    def seal(self, secret: str, *, user_id: int) -> Sealed:
        """The secret encrypted for this user."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.encryption).encrypt(nonce, secret.encode(), _bound_to(user_id))
        return Sealed(base64.urlsafe_b64encode(nonce + sealed).decode(), self.key_id)

    def open(self, sealed: Sealed, *, user_id: int) -> str:
        """The secret sealed for this user; SecretUnreadable under another key or altered."""
        if sealed.key_id != self.key_id:
            raise SecretUnreadable("sealed under another SECRET_KEY")
        try:
            raw = base64.urlsafe_b64decode(sealed.ciphertext)
            nonce, body = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
            return AESGCM(self.encryption).decrypt(nonce, body, _bound_to(user_id)).decode()
        except (InvalidTag, ValueError):
            raise SecretUnreadable("altered") from None

    def code_hash(self, code: str) -> str:
        """What the database keeps of a recovery code: a keyed hash (HMAC-SHA256)."""
        return hmac.new(self.recovery, code.encode(), hashlib.sha256).hexdigest()


def _hkdf(material: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(material)


def _bound_to(user_id: int) -> bytes:
    return f"totp-secret:user:{user_id}".encode()
