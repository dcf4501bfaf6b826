"""SQL for the mail outbox: queue, claim (a lease), mark sent, retry, give up, purge.

A row is `pending` until sent (`sent`) or given up (`failed`). Claiming pushes the row's
`next_attempt_at` past the send's timeout and counts the attempt, so a sender that dies
mid-send leaves the row to whichever sender comes after the lease; a sender finishes a
row only while `attempts` is still the one it claimed (a later claim wins). Once a row is
finished its bodies are emptied: the link in them must not outlive the send.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.clock import utc_now
from service.db import Connection, Row
from service.db.dialect import for_update_skip_locked


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A claimed message, and the attempt this is."""

    id: int
    kind: str
    recipient: str
    subject: str
    body_text: str
    body_html: str
    attempts: int
    created_at: str


INSERT_MESSAGE = """
INSERT INTO outbox (kind, recipient, subject, body_text, body_html, next_attempt_at, created_at)
VALUES (:kind, :recipient, :subject, :body_text, :body_html, :now, :now_text)
"""

SELECT_ANY_DUE = "SELECT 1 FROM outbox WHERE status = 'pending' AND next_attempt_at <= :now LIMIT 1"

SELECT_DUE = """
SELECT id, kind, recipient, subject, body_text, body_html, attempts, created_at FROM outbox
WHERE status = 'pending' AND next_attempt_at <= :now
ORDER BY next_attempt_at, id LIMIT :limit
"""

CLAIM = """
UPDATE outbox SET attempts = attempts + 1, next_attempt_at = :lease_until
WHERE id = :id AND status = 'pending'
"""

MARK_SENT = """
UPDATE outbox SET status = 'sent', finished_at = :now, last_error = NULL,
                  body_text = '', body_html = ''
WHERE id = :id AND attempts = :attempts AND status = 'pending'
"""

RETRY_LATER = """
UPDATE outbox SET next_attempt_at = :next_attempt_at, last_error = :error
WHERE id = :id AND attempts = :attempts AND status = 'pending'
"""

MARK_FAILED = """
UPDATE outbox SET status = 'failed', finished_at = :now, last_error = :error,
                  body_text = '', body_html = ''
WHERE id = :id AND attempts = :attempts AND status = 'pending'
"""

# Two purges at once take different rows ({skip_locked}).
PURGE = """
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox WHERE status <> 'pending' AND finished_at <= :before LIMIT :limit
    {skip_locked}
)
"""


async def queue(
    conn: Connection,
    *,
    kind: str,
    recipient: str,
    subject: str,
    body_text: str,
    body_html: str,
    now: float,
) -> None:
    """Add a message, due at once, in the caller's unit of work."""
    await conn.execute(
        INSERT_MESSAGE,
        {
            "kind": kind,
            "recipient": recipient,
            "subject": subject,
            "body_text": body_text,
            "body_html": body_html,
            "now": now,
            "now_text": utc_now(),
        },
    )


async def any_due(conn: Connection, *, now: float) -> bool:
    """Whether a pending message is due (a read: no write lock is taken to find nothing)."""
    return await conn.fetch_one(SELECT_ANY_DUE, {"now": now}) is not None


async def claim_due(
    conn: Connection, *, now: float, lease_until: float, limit: int
) -> list[Outgoing]:
    """Claim up to `limit` due messages until `lease_until`; each is one more attempt."""
    select = SELECT_DUE.rstrip() + for_update_skip_locked(conn.dialect)
    rows = await conn.fetch_all(select, {"now": now, "limit": limit})
    claimed = []
    for row in rows:
        await conn.execute(CLAIM, {"id": row["id"], "lease_until": lease_until})
        claimed.append(_outgoing(row, attempts=int(row["attempts"]) + 1))
    return claimed


async def mark_sent(conn: Connection, *, message_id: int, attempts: int, now: float) -> bool:
    """The message went out; False if a later claim has it now."""
    params = {"id": message_id, "attempts": attempts, "now": now}
    return await conn.execute(MARK_SENT, params) > 0


async def retry_later(
    conn: Connection, *, message_id: int, attempts: int, next_attempt_at: float, error: str
) -> None:
    """The attempt failed: try again at `next_attempt_at`."""
    params = {
        "id": message_id,
        "attempts": attempts,
        "next_attempt_at": next_attempt_at,
        "error": error,
    }
    await conn.execute(RETRY_LATER, params)


async def mark_failed(
    conn: Connection, *, message_id: int, attempts: int, now: float, error: str
) -> bool:
    """Give the message up after its last attempt."""
    params = {"id": message_id, "attempts": attempts, "now": now, "error": error}
    return await conn.execute(MARK_FAILED, params) > 0


async def purge(conn: Connection, *, before: float, limit: int) -> int:
    """Delete up to `limit` sent or failed messages finished before `before`."""
    sql = PURGE.format(skip_locked=for_update_skip_locked(conn.dialect))
    return await conn.execute(sql, {"before": before, "limit": limit})


def _outgoing(row: Row, *, attempts: int) -> Outgoing:
    return Outgoing(
        id=row["id"],
        kind=row["kind"],
        recipient=row["recipient"],
        subject=row["subject"],
        body_text=row["body_text"],
        body_html=row["body_html"],
        attempts=attempts,
        created_at=row["created_at"],
    )
