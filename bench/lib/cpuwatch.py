"""Where the 2 cores go during each wrk run: a sampler for bench/postgres.sh (stdlib only).

    cpuwatch.py --out DIR --pid node=PID [--pid nginx=PID ...] [--db NAME] [--port PORT]

Every --interval seconds it reads the CPU ticks (utime + stime, all threads) of:
  node, nginx, ...  each --pid LABEL=PID and its descendants, summed per label
  pg_db             the PostgreSQL backends serving database --db (by process title)
  pg_other          the other processes of that PostgreSQL server (WAL writer,
                    checkpointer, autovacuum, other clients' backends)
  wrk               wrk processes whose command line names 127.0.0.1:--port
  machine           the whole machine's busy ticks (/proc/stat: all but idle and iowait)
and remembers every wrk process it saw (its arguments, the first and the last sample it was
running in). It stops when every --pid is gone (or on SIGTERM) and writes DIR/cpu.tsv (one
row a sample, cumulative ticks) and DIR/wrk_runs.tsv. `pgreport.py` turns them into CPU %
per scenario. The watcher's own cost is one /proc scan a second (~1% of a core).
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path

PROC = Path("/proc")


def stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def ticks_of(pid: int) -> int | None:
    fields = stat_fields(pid)
    return None if fields is None else int(fields[11]) + int(fields[12])


def cmdline(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").rstrip("\0").split("\0")


def machine_busy() -> int:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return sum(parts[:8]) - idle  # user nice system idle iowait irq softirq steal


class Watch:
    def __init__(self, roots: list[tuple[str, int]], db: str | None, port: int | None) -> None:
        self.roots = roots
        self.db = db
        self.port = port
        self.groups = list(dict.fromkeys([label for label, _ in roots]))
        if db:
            self.groups += ["pg_db", "pg_other"]
        self.groups += ["wrk", "machine"]
        self.members: dict[int, str] = {}  # pid -> group
        self.last: dict[int, int] = {}  # pid -> last ticks seen (kept after it exits)
        self.wrk_runs: dict[int, list[object]] = {}  # pid -> [args, first, last]
        self.samples: list[list[float]] = []

    def scan(self) -> None:
        """Find the processes of each group (descendants, backends, wrk runs)."""
        parent: dict[int, int] = {}
        for entry in PROC.iterdir():
            if entry.name.isdigit():
                fields = stat_fields(int(entry.name))
                if fields is not None:
                    parent[int(entry.name)] = int(fields[1])
        children: dict[int, list[int]] = {}
        for pid, ppid in parent.items():
            children.setdefault(ppid, []).append(pid)
        for label, root in self.roots:
            todo = [root]
            while todo:
                pid = todo.pop()
                if pid in parent:
                    self.members.setdefault(pid, label)
                    todo.extend(children.get(pid, []))
        postmasters: set[int] = set()
        for pid in parent:
            if pid in self.members:
                continue
            args = cmdline(pid)
            if not args:
                continue
            title = " ".join(args)
            if self.db and title.startswith("postgres: ") and f" {self.db} " in title:
                self.members[pid] = "pg_db"
                postmasters.add(parent[pid])
            elif (
                self.port
                and os.path.basename(args[0]) == "wrk"
                and any(f"127.0.0.1:{self.port}" in a for a in args)
            ):
                self.members[pid] = "wrk"
                self.wrk_runs[pid] = [" ".join(args[1:]), len(self.samples), len(self.samples)]
        for master in postmasters:
            for pid in children.get(master, []):
                self.members.setdefault(pid, "pg_other")

    def sample(self) -> None:
        totals = dict.fromkeys(self.groups, 0)
        index = len(self.samples)
        for pid, group in self.members.items():
            ticks = ticks_of(pid)
            if ticks is not None:
                self.last[pid] = ticks
                if pid in self.wrk_runs:
                    self.wrk_runs[pid][2] = index
            totals[group] += self.last.get(pid, 0)
        totals["machine"] = machine_busy()
        self.samples.append([time.monotonic()] + [totals[g] for g in self.groups])

    def roots_alive(self) -> bool:
        return any(stat_fields(pid) is not None for _, pid in self.roots)

    def write(self, out: Path) -> None:
        hz = os.sysconf("SC_CLK_TCK")
        with (out / "cpu.tsv").open("w") as f:
            f.write("\t".join(["t", *self.groups]) + f"\t# ticks at {hz} Hz, cumulative\n")
            for row in self.samples:
                f.write(f"{row[0]:.3f}\t" + "\t".join(str(int(v)) for v in row[1:]) + "\n")
        with (out / "wrk_runs.tsv").open("w") as f:
            f.write("pid\tfirst_sample\tlast_sample\targs\n")
            for pid, (args, first, last) in self.wrk_runs.items():
                f.write(f"{pid}\t{first}\t{last}\t{args}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pid", action="append", default=[], help="LABEL=PID")
    parser.add_argument("--db")
    parser.add_argument("--port", type=int)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    roots = [(label, int(pid)) for label, pid in (p.split("=", 1) for p in args.pid)]
    watch = Watch(roots, args.db, args.port)
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    next_scan = 0.0
    while not stop and watch.roots_alive():
        now = time.monotonic()
        if now >= next_scan:
            watch.scan()
            next_scan = now + 1.0
        watch.sample()
        time.sleep(args.interval)
    watch.write(args.out)


if __name__ == "__main__":
    main()
