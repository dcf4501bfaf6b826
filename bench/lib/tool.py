"""Helpers for bench/run.sh (stdlib only).

free-port                      a free TCP port on 127.0.0.1
wait-http URL PID TIMEOUT      wait until URL answers 2xx (exit 1 if PID dies or time runs out)
cpu-ticks PID                  utime+stime of PID (all threads) in clock ticks
peak-rss PID                   peak resident memory (VmHWM) of PID and its descendants, MiB
header                         the column header of `result` lines
result --scenario ... FILES    one wrk run -> one printed line and one TSV row (with --label,
                               --round: the competitor and round, for bench/postgres.sh)
check TSV                      exit 1 if any row has non-2xx responses or socket errors
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

COLUMNS = [
    "label",
    "round",
    "scenario",
    "conns",
    "rps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "requests",
    "non2xx",
    "sock_errors",
    "server_cpu_pct",
    "wrk_cpu_pct",
    "refresh_logins",
]
HEADER = (
    f"{'scenario':<26}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    f"{'non2xx':>8}{'sockerr':>8}{'srv CPU':>9}{'wrk CPU':>9}"
)


def free_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        print(sock.getsockname()[1])


def wait_http(url: str, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            sys.exit(f"the server (pid {pid}) exited before answering")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (a fixed http:// URL)
                return
        except urllib.error.HTTPError as error:
            sys.exit(f"{url} answered {error.code}")
        except OSError:
            time.sleep(0.1)
    sys.exit(f"no answer from {url} within {timeout:.0f} s")


def cpu_ticks(pid: int) -> None:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    print(int(fields[11]) + int(fields[12]))


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def peak_rss(pid: int) -> None:
    total_kib = 0
    for proc in _descendants(pid):
        try:
            for line in Path(f"/proc/{proc}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kib += int(line.split()[1])
        except OSError:
            pass
    print(f"{total_kib / 1024:.1f}")


def result(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="tool.py result")
    p.add_argument("--scenario", required=True)
    p.add_argument("--conns", type=int, required=True)
    p.add_argument("--wrk-out", type=Path, required=True)
    p.add_argument("--time-file", type=Path, required=True)
    p.add_argument("--ticks-before", default="")
    p.add_argument("--ticks-after", default="")
    p.add_argument("--tsv", type=Path, required=True)
    p.add_argument("--label", default="")
    p.add_argument("--round", default="")
    a = p.parse_args(argv)

    text = a.wrk_out.read_text(errors="replace")
    match = re.search(r"^WRK_RESULT (.*)$", text, re.M)
    if not match:
        print(f"{a.scenario:<26} wrk failed: {text.strip()[-300:]}", file=sys.stderr)
        sys.exit(1)
    r = {k: int(v) for k, v in (kv.split("=") for kv in match.group(1).split())}
    user, system, real = (float(x) for x in a.time_file.read_text().split()[-3:])
    rps = r["requests"] / (r["duration_us"] / 1e6)
    # Strict mode (--smoke) counts every status outside 200-299; wrk alone counts >= 400.
    non2xx = r["not2xx_strict"] if r["not2xx_strict"] >= 0 else r["non2xx"]
    sock_errors = r["connect"] + r["read"] + r["write"] + r["timeout"]
    server_cpu = ""
    if a.ticks_before and a.ticks_after:
        ticks = int(a.ticks_after) - int(a.ticks_before)
        server_cpu = f"{100 * ticks / os.sysconf('SC_CLK_TCK') / real:.0f}"
    wrk_cpu = f"{100 * (user + system) / real:.0f}"
    logins = re.search(r"^REFRESH_LOGINS (\d+)$", text, re.M)  # refresh.lua's fallback logins
    row = {
        "label": a.label,
        "round": a.round,
        "scenario": a.scenario,
        "conns": a.conns,
        "rps": f"{rps:.1f}",
        "p50_ms": f"{r['p50_us'] / 1000:.2f}",
        "p90_ms": f"{r['p90_us'] / 1000:.2f}",
        "p99_ms": f"{r['p99_us'] / 1000:.2f}",
        "max_ms": f"{r['max_us'] / 1000:.2f}",
        "requests": r["requests"],
        "non2xx": non2xx,
        "sock_errors": sock_errors,
        "server_cpu_pct": server_cpu,
        "wrk_cpu_pct": wrk_cpu,
        "refresh_logins": logins.group(1) if logins else "",
    }
    srv = f"{server_cpu}%" if server_cpu else "-"
    print(
        f"{a.scenario:<26}{a.conns:>6}{rps:>10.1f}{row['p50_ms']:>9}{row['p99_ms']:>9}"
        f"{row['max_ms']:>9}{non2xx:>8}{sock_errors:>8}{srv:>9}{wrk_cpu + '%':>9}"
    )
    new = not a.tsv.exists() or a.tsv.stat().st_size == 0
    with a.tsv.open("a") as f:
        if new:
            f.write("\t".join(COLUMNS) + "\n")
        f.write("\t".join(str(row[c]) for c in COLUMNS) + "\n")


def check(tsv: Path) -> None:
    bad = [
        f"{row['scenario']}: {row['non2xx']} non-2xx, {row['sock_errors']} socket errors"
        for row in csv.DictReader(tsv.open(), delimiter="\t")
        if int(row["non2xx"]) or int(row["sock_errors"])
    ]
    if bad:
        print("FAILED: " + "; ".join(bad), file=sys.stderr)
        sys.exit(1)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    command, args = sys.argv[1], sys.argv[2:]
    if command == "free-port":
        free_port()
    elif command == "wait-http":
        wait_http(args[0], int(args[1]), float(args[2]))
    elif command == "cpu-ticks":
        cpu_ticks(int(args[0]))
    elif command == "peak-rss":
        peak_rss(int(args[0]))
    elif command == "header":
        print(HEADER)
    elif command == "result":
        result(args)
    elif command == "check":
        check(Path(args[0]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
