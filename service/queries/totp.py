"""SQL for TOTP secrets and recovery codes. The caller owns the unit of work.

Every single-use rule is one conditional statement whose row count tells whether it
held (a step spent only if later than the last one, a code deleted only if still there),
so that it holds under READ COMMITTED without any lock around it.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.db import Connection


@dataclass(frozen=True, slots=True)
class StoredSecret:
    ciphertext: str
    key_id: str
    enabled: bool
    last_used_step: int


# A pending secret replaces a pending one, never an enabled one (then: no row changed).
UPSERT_PENDING = """
INSERT INTO totp_secrets (user_id, ciphertext, key_id, enabled, last_used_step, created_at)
VALUES (:user_id, :ciphertext, :key_id, FALSE, 0, :now)
ON CONFLICT (user_id) DO UPDATE
SET ciphertext = excluded.ciphertext, key_id = excluded.key_id, last_used_step = 0,
    created_at = excluded.created_at
WHERE NOT totp_secrets.enabled
"""

SELECT_STORED = """
SELECT ciphertext, key_id, enabled, last_used_step FROM totp_secrets WHERE user_id = :user_id
"""

# Enables the very secret the code was checked against, and spends the code's step.
ENABLE = """
UPDATE totp_secrets SET enabled = TRUE, last_used_step = :step
WHERE user_id = :user_id AND NOT enabled AND ciphertext = :ciphertext
  AND last_used_step < :step
"""

# A code is good once: only for a step later than the last one accepted.
SPEND_STEP = """
UPDATE totp_secrets SET last_used_step = :step
WHERE user_id = :user_id AND enabled AND last_used_step < :step
"""

DELETE_STORED = "DELETE FROM totp_secrets WHERE user_id = :user_id"

INSERT_RECOVERY_CODE = """
INSERT INTO totp_recovery_codes (user_id, code_hash) VALUES (:user_id, :code_hash)
"""

SPEND_RECOVERY_CODE = """
DELETE FROM totp_recovery_codes WHERE user_id = :user_id AND code_hash = :code_hash
"""

DELETE_RECOVERY_CODES = "DELETE FROM totp_recovery_codes WHERE user_id = :user_id"


async def store_pending(
    conn: Connection, *, user_id: int, ciphertext: str, key_id: str, now: float
) -> bool:
    """Store a pending secret for the user; False if his TOTP is enabled (nothing stored)."""
    params = {"user_id": user_id, "ciphertext": ciphertext, "key_id": key_id, "now": now}
    return await conn.execute(UPSERT_PENDING, params) > 0


async def get_secret(conn: Connection, *, user_id: int) -> StoredSecret | None:
    """The user's secret, pending or enabled, or None."""
    row = await conn.fetch_one(SELECT_STORED, {"user_id": user_id})
    if row is None:
        return None
    return StoredSecret(
        ciphertext=row["ciphertext"],
        key_id=row["key_id"],
        enabled=bool(row["enabled"]),
        last_used_step=int(row["last_used_step"]),
    )


async def enable(conn: Connection, *, user_id: int, ciphertext: str, step: int) -> bool:
    """Enable the pending secret `ciphertext`; False if it is not (or no longer) pending."""
    params = {"user_id": user_id, "ciphertext": ciphertext, "step": step}
    return await conn.execute(ENABLE, params) > 0


async def spend_step(conn: Connection, *, user_id: int, step: int) -> bool:
    """Accept a code of `step` once; False if that step or a later one was accepted."""
    return await conn.execute(SPEND_STEP, {"user_id": user_id, "step": step}) > 0


async def delete_secret(conn: Connection, *, user_id: int) -> bool:
    """Forget the user's secret; False if he had none."""
    return await conn.execute(DELETE_STORED, {"user_id": user_id}) > 0


async def replace_recovery_codes(conn: Connection, *, user_id: int, code_hashes: list[str]) -> None:
    """The user's recovery codes become exactly these (the old ones die)."""
    await conn.execute(DELETE_RECOVERY_CODES, {"user_id": user_id})
    for code_hash in code_hashes:
        await conn.execute(INSERT_RECOVERY_CODE, {"user_id": user_id, "code_hash": code_hash})


async def spend_recovery_code(conn: Connection, *, user_id: int, code_hash: str) -> bool:
    """Spend one unused recovery code; False if it is not one (or was spent meanwhile)."""
    params = {"user_id": user_id, "code_hash": code_hash}
    return await conn.execute(SPEND_RECOVERY_CODE, params) > 0


async def delete_recovery_codes(conn: Connection, *, user_id: int) -> None:
    """Forget every recovery code of the user."""
    await conn.execute(DELETE_RECOVERY_CODES, {"user_id": user_id})
