"""The per-request cost of METRICS_ENABLED: two run.py side by side, loaded in turns.

    .venv/bin/python bench/lib/metrics_ab.py [--rounds 10] [--seconds 5] [--connections 64]

Starts this checkout's run.py twice on fresh temporary databases, one with
METRICS_ENABLED=false and one with true, creates a few products in each, then loads them
in alternating short bursts of `GET /products/{id}` with wrk (the order flips every round),
so that load from other processes on the machine falls on both alike. For each burst it
records req/s and the server's CPU time per request (utime + stime from /proc), and prints
the medians and the per-round paired ratios. Only one server is loaded at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTS = 50
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(folder: Path, enabled: bool) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "METRICS_ENABLED": "true" if enabled else "false",
        "DATABASE_PATH": str(folder / "bench.db"),
        "LOG_FILE": str(folder / "app.log"),
        "LOG_STDERR": "0",
        "SECRET_KEY": secrets.token_hex(32),
        "MAIL_URL": f"file:{folder / 'mail'}",
    }
    with (folder / "server.log").open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 (this checkout's run.py)
            [sys.executable, str(ROOT / "run.py"), "--port", str(port)],
            env=env,
            cwd=folder,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"run.py did not start: see {folder / 'server.log'}") from None
            time.sleep(0.1)
    for n in range(PRODUCTS):
        body = json.dumps({"name": f"product {n}", "price": n + 1}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/products/",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310
    return process, port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def burst(pid: int, port: int, seconds: int, connections: int, script: Path) -> tuple[float, float]:
    """(req/s, CPU µs per request) of one wrk burst."""
    before = cpu_seconds(pid)
    result = subprocess.run(  # noqa: S603
        [  # noqa: S607 (wrk from PATH, as bench/run.sh runs it)
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    used = cpu_seconds(pid) - before
    total = int(re.search(r"(\d+) requests in", result.stdout).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    if "Non-2xx" in result.stdout:
        raise SystemExit(f"non-2xx answers:\n{result.stdout}")
    return rate, used / total * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="metrics-ab-") as temp:
        script = Path(temp) / "get.lua"
        script.write_text(
            f"math.randomseed(os.time())\nrequest = function()\n"
            f'  return wrk.format("GET", "/products/" .. math.random(1, {PRODUCTS}))\nend\n'
        )
        servers = {}
        for label, enabled in (("off", False), ("on", True)):
            folder = Path(temp) / label
            folder.mkdir()
            servers[label] = start(folder, enabled)
        try:
            results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
            for round_number in range(args.rounds):
                order = ("off", "on") if round_number % 2 == 0 else ("on", "off")
                for label in order:
                    process, port = servers[label]
                    results[label].append(
                        burst(process.pid, port, args.seconds, args.connections, script)
                    )
                off, on = results["off"][-1], results["on"][-1]
                print(
                    f"round {round_number + 1}: off {off[0]:.0f} req/s {off[1]:.0f} µs, "
                    f"on {on[0]:.0f} req/s {on[1]:.0f} µs, load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=60)
    report(results)


def report(results: dict[str, list[tuple[float, float]]]) -> None:
    for index, what in ((0, "req/s"), (1, "CPU µs per request")):
        off = [each[index] for each in results["off"]]
        on = [each[index] for each in results["on"]]
        ratios = sorted(b / a for a, b in zip(off, on, strict=True))
        middle_off, middle_on = statistics.median(off), statistics.median(on)
        print(
            f"{what}: off median {middle_off:.1f}, on median {middle_on:.1f}, "
            f"on/off {middle_on / middle_off:.3f} "
            f"(paired ratios: median {statistics.median(ratios):.3f}, "
            f"{ratios[0]:.3f}-{ratios[-1]:.3f})"
        )


if __name__ == "__main__":
    main()
