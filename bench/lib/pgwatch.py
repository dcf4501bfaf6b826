"""Lock waits and failed transactions of one database during a wrk run (stdlib + psql).

    pgwatch.py --url URL --db NAME --tsv FILE --label L --round R --scenario S [--log PGLOG]

Until SIGTERM it samples pg_stat_activity every --interval seconds (one psql session, kept
open) and counts the client backends of database NAME that are active, and among them those
waiting on a heavyweight lock (wait_event_type Lock: `advisory` for an advisory lock,
`transactionid` or `tuple` for a row another transaction holds). At the end it appends one
TSV row: those averages, the share of active backend samples spent waiting on a lock, the
database's commits, rollbacks and deadlocks meanwhile (pg_stat_database; a read-only
snapshot also ends in ROLLBACK, so rollbacks are not all failures), and the server log's
ERROR lines for the database meanwhile: serialization failures (`could not serialize`),
deadlocks, lock timeouts (`lock timeout`) and the rest. The log (default: Debian's) is
skipped when it cannot be read; its lines must carry the database name (Debian's
log_line_prefix does: `user@db`).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import time
from pathlib import Path

ACTIVITY = """SELECT count(*) FILTER (WHERE state = 'active'),
  count(*) FILTER (WHERE wait_event_type = 'Lock'),
  count(*) FILTER (WHERE wait_event = 'advisory'),
  count(*) FILTER (WHERE wait_event IN ('transactionid', 'tuple'))
FROM pg_stat_activity
WHERE datname = :'db' AND backend_type = 'client backend' AND pid <> pg_backend_pid();"""
COUNTERS = """SELECT xact_commit, xact_rollback, deadlocks FROM pg_stat_database
WHERE datname = :'db';"""
KINDS = ("could not serialize", "deadlock detected", "lock timeout")
COLUMNS = [
    "label",
    "round",
    "scenario",
    "samples",
    "active_avg",
    "lock_wait_avg",
    "advisory_wait_avg",
    "row_wait_avg",
    "lock_wait_pct",
    "commits",
    "rollbacks",
    "deadlocks",
    "log_serialization",
    "log_deadlock",
    "log_lock_timeout",
    "log_other_errors",
]


class Psql:
    """One psql session: a query in, its unaligned rows out."""

    def __init__(self, url: str, db: str) -> None:
        # psql from PATH, as postgres.sh runs it; the arguments are ours
        command = ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", f"db={db}", url]
        self.proc = subprocess.Popen(  # noqa: S603
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def rows(self, sql: str) -> list[list[int]]:
        assert self.proc.stdin
        assert self.proc.stdout
        self.proc.stdin.write(sql + "\n\\echo __end__\n")
        self.proc.stdin.flush()
        out = []
        while (line := self.proc.stdout.readline().rstrip("\n")) != "__end__":
            if not line and self.proc.poll() is not None:
                raise SystemExit("pgwatch.py: psql ended")
            if line:
                out.append([int(x or 0) for x in line.split("\t")])
        return out

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait()


def log_errors(log: Path, start: int, db: str) -> list[str]:
    """Serialization failures, deadlocks, lock timeouts, other ERRORs logged for `db`."""
    try:
        with log.open("rb") as f:
            f.seek(start)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ["", "", "", ""]
    mine = [line for line in lines if f"@{db} " in line and " ERROR: " in line]
    kinds = [sum(k in line for line in mine) for k in KINDS]
    return [str(n) for n in kinds] + [str(len(mine) - sum(kinds))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--url", "--db", "--label", "--round", "--scenario"):
        p.add_argument(name, required=True)
    p.add_argument("--tsv", type=Path, required=True)
    p.add_argument("--log", type=Path, default=Path("/var/log/postgresql/postgresql-15-main.log"))
    p.add_argument("--interval", type=float, default=0.2)
    a = p.parse_args()
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    try:
        log_start = a.log.stat().st_size
    except OSError:
        log_start = -1
    psql = Psql(a.url, a.db)
    before = psql.rows(COUNTERS)[0]
    sums, samples = [0, 0, 0, 0], 0
    while not stop:
        for i, value in enumerate(psql.rows(ACTIVITY)[0]):
            sums[i] += value
        samples += 1
        time.sleep(a.interval)
    after = psql.rows(COUNTERS)[0]
    psql.close()
    logged = log_errors(a.log, log_start, a.db) if log_start >= 0 else ["", "", "", ""]
    n = max(samples, 1)
    row = [a.label, a.round, a.scenario, str(samples)]
    row += [f"{s / n:.2f}" for s in sums]
    row.append(f"{100 * sums[1] / sums[0]:.1f}" if sums[0] else "0.0")
    row += [str(y - x) for x, y in zip(before, after, strict=True)]
    row += logged
    new = not a.tsv.exists() or a.tsv.stat().st_size == 0
    with a.tsv.open("a") as f:
        if new:
            f.write("\t".join(COLUMNS) + "\n")
        f.write("\t".join(row) + "\n")


if __name__ == "__main__":
    main()
