"""Where the event loop's time goes: py-spy raw samples -> one table of request-cost categories.

    breakdown.py SAMPLES.txt [WAIT_LINE]   (py-spy record --threads --idle --format raw)

Only the main thread (the event loop) is counted. Each sample goes to the first category
whose rule matches its stack (rules below, most specific first), so the rows add up to 100%.
"Busy" excludes the samples where the loop waits in epoll. The aiosqlite threads are
summarised on one line: how often they were executing rather than waiting for work
(WAIT_LINE: the line of `tx.get()` in aiosqlite's _connection_worker_thread).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

IDLE = "idle: waiting in epoll"


def category(frames: list[str]) -> str:
    names = [re.sub(r":\d+\)$", ")", frame) for frame in frames]
    leaf = names[-1] if names else ""

    def has(text: str) -> bool:
        return any(text in name for name in names)

    if leaf.startswith(("EpollSelector.select", "select (selectors")):
        return IDLE
    if has("loguru/") or has("service/log.py"):
        return "logging: the loguru line (observe)"
    if has("jwt/") or has("service/tokens.py"):
        return "auth: JWT decode"
    if has("json/") or has("orjson"):
        return "JSON serialisation"
    if has("_read_from_self"):
        return "SQL: aiosqlite thread hop (self-pipe wake-up)"
    if has("aiosqlite/") or has("service/db/sqlite.py") or has("service/queries/"):
        return "SQL: aiosqlite calls, reader pool, row mapping (loop side)"
    if has("webargs/") or has("marshmallow/") or has("service/jsonbody.py"):
        return "validation: webargs/marshmallow, JSON body parsing"
    if has("asyncio/timeouts.py"):
        return "deadline: asyncio.timeout"
    if has("uuid.py"):
        return "observe: uuid4 request id"
    service = [name for name in names if "service/" in name]
    if service:
        innermost = service[-1]
        function = innermost.split(" (")[0]
        if "routes/" in innermost:
            if has("web_response.py"):
                return "handler: building the web.Response"
            return "handler: own code"
        if function.startswith(("observe", "_log_request")):
            return "observe: own code (timing, headers)"
        if function.startswith("problems"):
            return "problems: own code"
        if "enforce_deadline" in function:
            return "deadline: own code"
        if "auth.py" in innermost:
            return "authenticate: own code"
        if "validation.py" in innermost:
            return "validate: own code"
        return f"other service code ({function})"
    if has("finish_response"):
        return "aiohttp: response headers + socket write"
    if has("web_urldispatcher"):
        return "aiohttp: routing"
    if has("data_received") or has("_read_ready"):
        return "aiohttp: socket read + HTTP parsing"
    if has("web_protocol.py") or has("web_app.py") or has("web_middlewares.py"):
        return "aiohttp: request dispatch, middleware chain"
    if has("uvloop"):
        return "uvloop: C event loop (waiting included)"
    return "asyncio: loop overhead (run_once, tasks, callbacks)"


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    wait_frame = (
        f"_connection_worker_thread (aiosqlite/core.py:{sys.argv[2]})" if sys.argv[2:] else ""
    )
    loop: Counter[str] = Counter()
    workers: Counter[str] = Counter()
    for line in Path(sys.argv[1]).read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = stack.split(";")
        if "MainThread" in frames[0]:
            loop[category(frames[1:])] += int(samples)
        elif "_connection_worker_thread" in frames[0]:
            workers["waiting" if frames[-1] == wait_frame else "working"] += int(samples)
    total = sum(loop.values())
    if not total:
        sys.exit("no MainThread samples (record with --threads --idle)")
    busy = total - loop[IDLE]
    print(f"event loop busy {100 * busy / total:.0f}% of {total} samples")
    print("| where the event loop's time goes | % of busy | % of all |")
    print("|---|---:|---:|")
    for name, count in loop.most_common():
        share = "" if name == IDLE else f"{100 * count / busy:.1f}"
        print(f"| {name} | {share} | {100 * count / total:.1f} |")
    if workers and wait_frame:
        working = 100 * workers["working"] / sum(workers.values())
        print(f"\naiosqlite threads: executing {working:.0f}% of the time (average over them)")


if __name__ == "__main__":
    main()
