"""Tables for bench/postgres.sh from one run folder (stdlib only).

    pgreport.py RUN_DIR      (RUN_DIR holds results.tsv and <label>-r<round>/ folders)

1. req/s and p99 per scenario for every competitor but the variants, medians over rounds,
   with the paired per-round ratios (b)/(a), (c)/(b), new ÷ baseline (pg1 ÷ pg1_base, ...)
   and ÷ fastapi, those that ran.
2. The variants against their counterparts, when they ran.
3. Every non-2xx response and socket error (they should all be 0).
4. The database's lock waits, commits and logged errors during each measured run
   (results-pgwatch.tsv, from lib/pgwatch.py), when sampled.
5. Where the CPU went during each measured wrk run (lib/cpuwatch.py's samples), in % of one
   core, medians over rounds: the nodes, their PostgreSQL backends, the rest of PostgreSQL,
   nginx, the delay proxy, wrk, and the whole machine (2 cores = 200%), and the CPU per
   request of nodes + backends + nginx.
"""

from __future__ import annotations

import csv
import os
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ORDER = [
    "products-get",
    "products-list",
    "users-me",
    "products-post",
    "products-put",
    "login",
    "products-get-16c",
    "mixed:products-get-16c",
    "mixed:login(bg)",
    "refresh",
    "write-mix:login",
    "write-mix:refresh",
    "write-mix:products-post",
    "write-mix:products-put",
    "write-mix:products-get",
]
NAMES = {"fastapi": "fastapi", "sqlite": "(a) sqlite", "pg1": "(b) pg1", "pg2": "(c) pg2"}
RATIOS = [
    ("pg1", "sqlite", "(b)÷(a)"),
    ("pg2", "pg1", "(c)÷(b)"),
    ("pg2_split", "pg1", "pg2_split÷pg1"),
    ("pg2_base", "pg1_base", "pg2_base÷pg1_base"),
    ("pg1", "pg1_base", "pg1÷pg1_base"),
    ("pg2", "pg2_base", "pg2÷pg2_base"),
    ("sqlite", "sqlite_base", "sqlite÷sqlite_base"),
]
VARIANTS = {"pg1_nginx", "pg1_async"}
SCRIPTS = {
    "products_get": "products-get",
    "get": "products-list",
    "users_me": "users-me",
    "products_post": "products-post",
    "products_put": "products-put",
    "login": "login",
    "refresh": "refresh",
}
VARIANT_RATIOS = [
    ("pg1_nginx", "pg1", "pg1_nginx÷pg1"),
    ("pg2", "pg1_nginx", "pg2÷pg1_nginx"),
    ("pg1_async", "pg1", "pg1_async÷pg1"),
    ("pg1_async", "sqlite", "pg1_async÷sqlite"),
]


def med(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    return f" [{min(values):.2f}–{max(values):.2f}]" if len(values) > 1 else ""


def load(run: Path) -> dict[tuple[str, str], dict[str, dict[str, str]]]:
    by: dict[tuple[str, str], dict[str, dict[str, str]]] = defaultdict(dict)
    with (run / "results.tsv").open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            by[row["label"], row["scenario"]][row["round"]] = row
    return by


def ratio(by, top: str, bottom: str, scenario: str) -> str:
    a, b = by.get((top, scenario)), by.get((bottom, scenario))
    if not a or not b:
        return "—"
    paired = [float(a[r]["rps"]) / float(b[r]["rps"]) for r in a if r in b]
    whole = med([float(x["rps"]) for x in a.values()]) / med([float(x["rps"]) for x in b.values()])
    return f"×{whole:.2f}{spread(paired)}"


def cell(by, label: str, scenario: str) -> str:
    rows = by.get((label, scenario))
    if not rows:
        return "—"
    rps = med([float(r["rps"]) for r in rows.values()])
    p99 = med([float(r["p99_ms"]) for r in rows.values()])
    return f"{rps:,.0f} ({p99:,.1f})"


def scenarios_of(by) -> list[str]:
    seen = {s for _, s in by}
    return [s for s in ORDER if s in seen] + sorted(seen - set(ORDER))


def cpu_windows(folder: Path) -> dict[str, dict[str, float]]:
    """scenario -> group -> CPU % of one core, over the measured wrk run of that scenario."""
    cpu, runs = folder / "cpu.tsv", folder / "wrk_runs.tsv"
    if not cpu.exists() or not runs.exists():
        return {}
    hz = os.sysconf("SC_CLK_TCK")
    with cpu.open() as f:
        header = f.readline().split("#")[0].split()
        samples = [[float(x) for x in line.split()] for line in f]
    parsed = []
    with runs.open() as f:
        next(f)
        for line in f:
            _pid, first, last, args = line.rstrip("\n").split("\t", 3)
            conns = int(re.search(r"-c(\d+)", args).group(1))
            duration = int(re.search(r"-d(\d+)s", args).group(1))
            script = re.search(r"(\w+)\.lua", args).group(1)
            parsed.append((script, conns, duration, int(first), int(last)))
    gets = [d for s, _, d, _, _ in parsed if s != "login"]
    if not gets:
        return {}
    measured = max(gets)
    background = [(a, b) for s, _, d, a, b in parsed if s == "login" and d == measured + 2]
    runs = [(a, b) for _, _, d, a, b in parsed if d == measured]
    out = {}
    for script, conns, duration, first, last in parsed:
        if duration != measured or last - first < 2:
            continue
        name = SCRIPTS.get(script, script)
        if script == "products_get" and conns == 16:
            overlaps = any(a <= last and first <= b for a, b in background)
            name = "mixed:products-get-16c" if overlaps else "products-get-16c"
        if sum(a <= last and first <= b for a, b in runs) > 2:  # itself and 2 more at once
            name = "write-mix"
        t0, t1 = samples[first], samples[last]
        seconds = t1[0] - t0[0]
        out[name] = {g: (t1[i] - t0[i]) / hz / seconds * 100 for i, g in enumerate(header) if i}
    return out


def waits_table(run: Path) -> None:
    """The database's lock waits and failures per competitor and scenario (pgwatch.py)."""
    tsv = run / "results-pgwatch.tsv"
    if not tsv.exists():
        return
    rows: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    with tsv.open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            rows[row["label"], row["scenario"]].append(row)
    print("\n## Lock waits and failed transactions in the database (pgwatch.py)\n")
    print(
        "Sampled every 0.2 s during the measured run: client backends of the bench database "
        "that are active, and of them waiting on a lock (advisory: the global lock; row: "
        "`transactionid`/`tuple`), medians over rounds; waiting % = lock-waiting samples of "
        "all active ones. Commits, rollbacks (read snapshots end in ROLLBACK too) and "
        "deadlocks from pg_stat_database, and the server log's ERRORs for the database "
        "(serialization failures, deadlocks, lock timeouts, others): sums over rounds.\n"
    )
    print(
        "| competitor | scenario | active | waiting | advisory | row | waiting % | commits "
        "| rollbacks | deadlocks | serialization ERRORs | deadlock ERRORs | lock timeouts "
        "| other ERRORs |"
    )
    print("|---|---|" + "---:|" * 12)

    def median_of(group: list[dict[str, str]], key: str) -> str:
        return f"{med([float(r[key]) for r in group]):.2f}"

    def total(group: list[dict[str, str]], key: str) -> str:
        values = [r[key] for r in group if r[key] != ""]
        return f"{sum(int(v) for v in values):,}" if values else "—"

    for (label, scenario), group in rows.items():
        cells = [median_of(group, k) for k in ("active_avg", "lock_wait_avg")]
        cells += [median_of(group, k) for k in ("advisory_wait_avg", "row_wait_avg")]
        cells.append(f"{med([float(r['lock_wait_pct']) for r in group]):.1f}")
        cells += [total(group, k) for k in ("commits", "rollbacks", "deadlocks")]
        cells += [
            total(group, k) for k in ("log_serialization", "log_deadlock", "log_lock_timeout")
        ]
        cells.append(total(group, "log_other_errors"))
        print(f"| {label} | {scenario} | " + " | ".join(cells) + " |")
    conflicts = defaultdict(int)
    for log in run.glob("*-r*/app*.log"):
        label = log.parent.name.rsplit("-r", 1)[0]
        with log.open(errors="replace") as f:
            conflicts[label] += sum("Write conflict" in line for line in f)
    print(
        "\nThe nodes' `Write conflict` warnings (a unit of work rolled back and answered 503), "
        "per competitor, over all its starts and scenarios (seeding included): "
        + ", ".join(f"{label} {n}" for label, n in sorted(conflicts.items()))
        + "."
    )


def main() -> None:
    run = Path(sys.argv[1])
    by = load(run)
    labels = list(dict.fromkeys(label for label, _ in by))
    main_labels = [label for label in labels if label not in VARIANTS]
    scen = scenarios_of(by)
    rounds = max(len(v) for v in by.values())

    print(
        f"## {run.name}: req/s (p99 ms), medians of {rounds} rounds; ratios of the medians "
        "[per-round paired min–max]\n"
    )
    ratios = [r for r in RATIOS if r[0] in labels and r[1] in labels]
    if "fastapi" in labels:
        ratios += [
            (x, "fastapi", f"{NAMES[x][:3]}÷fastapi")
            for x in ("sqlite", "pg1", "pg2")
            if x in labels
        ]
    columns = [NAMES.get(x, x) for x in main_labels] + [r[2] for r in ratios]
    print("| scenario | conns | " + " | ".join(columns) + " |")
    print("|---|---:|" + "---:|" * len(columns))
    for s in scen:
        label = next(x for x in labels if by.get((x, s)))
        rows = next(iter(by[label, s].values()))  # any row: its conns
        cells = [cell(by, x, s) for x in main_labels]
        cells += [ratio(by, t, b, s) for t, b, _ in ratios]
        print(f"| {s} | {rows['conns']} | " + " | ".join(cells) + " |")

    variants = [r for r in VARIANT_RATIOS if r[0] in labels and r[1] in labels]
    if variants:
        print("\n## Variants (their scenarios only)\n")
        vlabels = [x for x in labels if x in VARIANTS]
        print(
            "| scenario | "
            + " | ".join(vlabels)
            + " | "
            + " | ".join(r[2] for r in variants)
            + " |"
        )
        print("|---|" + "---:|" * (len(vlabels) + len(variants)))
        for s in scen:
            if not any(by.get((x, s)) for x in vlabels):
                continue
            print(
                f"| {s} | "
                + " | ".join(cell(by, x, s) for x in vlabels)
                + " | "
                + " | ".join(ratio(by, t, b, s) for t, b, _ in variants)
                + " |"
            )

    print("\n## Non-2xx responses and socket errors (sum over rounds)\n")
    bad = [
        (
            label,
            s,
            sum(int(r["non2xx"]) for r in rows.values()),
            sum(int(r["sock_errors"]) for r in rows.values()),
        )
        for (label, s), rows in by.items()
    ]
    bad = [b for b in bad if b[2] or b[3]]
    if not bad:
        print("None: every competitor answered every request 2xx, with no socket error.")
    for label, s, non2xx, sockerr in bad:
        print(f"- {label} {s}: non2xx {non2xx}, socket errors {sockerr}")
    logins = [
        (label, s, sum(int(r.get("refresh_logins") or 0) for r in rows.values()))
        for (label, s), rows in by.items()
    ]
    for label, s, n in logins:
        if n:
            print(f"- {label} {s}: {n} logins instead of refreshes (a connection lost its token)")

    waits_table(run)

    print("\n## CPU during the measured run, % of one core (medians of the rounds)\n")
    print(
        "node = our run.py processes (fastapi: its uvicorn); pg_db = the PostgreSQL backends of "
        "the bench database; pg_other = the rest of that PostgreSQL server; proxy = the delay "
        "proxy (--delay); machine = every process on the machine (of 200%). ms/req = (node + "
        "pg_db + nginx) CPU per request (write-mix: per request of all five types).\n"
    )
    print(
        "| competitor | scenario | node | pg_db | pg_other | nginx | proxy | wrk | machine "
        "| ms/req |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label in labels:
        per_round = defaultdict(lambda: defaultdict(list))
        for folder in sorted(run.glob(f"{label}-r*")):
            for s, groups in cpu_windows(folder).items():
                for g, v in groups.items():
                    per_round[s]["node" if g == "server" else g].append(v)
        for s in [*scen, "write-mix"]:
            parts = [x for x in scen if x.startswith("write-mix:")] if s == "write-mix" else [s]
            if s not in per_round or not all(by.get((label, x)) for x in parts):
                continue
            g = {k: med(v) for k, v in per_round[s].items()}
            rps = sum(med([float(r["rps"]) for r in by[label, x].values()]) for x in parts)
            own = g.get("node", 0) + g.get("pg_db", 0) + g.get("nginx", 0)
            cols = [
                f"{g[k]:.0f}" if k in g else "—"
                for k in ("node", "pg_db", "pg_other", "nginx", "proxy", "wrk", "machine")
            ]
            per_req = f"{own / 100 / rps * 1000:.2f}" if rps else "—"
            if s == "mixed:products-get-16c":
                per_req += " (incl. logins)"
            print(f"| {label} | {s} | " + " | ".join(cols) + f" | {per_req} |")


if __name__ == "__main__":
    main()
