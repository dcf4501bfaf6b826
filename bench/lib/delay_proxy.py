"""A TCP proxy that delays every chunk by D ms in each direction (bench tooling, stdlib only).

    delay_proxy.py --listen PORT --target HOST:PORT --delay-ms D [--pid-file F] [--while-pid P]

Puts a database "D ms away" (a round trip of 2 D more) between the nodes and PostgreSQL on
a kernel without netem. Each chunk read from one side is written to the other D ms after it
arrived, in order, while the next chunks are already being read: a latency, not a
bandwidth limit, so pipelined statements overlap as they would on a real link. Threads, not
asyncio: an event loop's timers round up to whole milliseconds (0.5 ms became 1.2 ms), while
time.sleep keeps a sub-millisecond delay. It prints "listening on PORT" once it accepts,
and runs until SIGTERM or SIGINT, or (--while-pid) until process P is gone.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import socket
import sys
import threading
import time
from pathlib import Path

CHUNK = 65536


def pump(src: socket.socket, dst: socket.socket, delay: float) -> None:
    """Copy src to dst in two threads, each chunk `delay` seconds after it was read."""
    chunks: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

    def read() -> None:
        try:
            while data := src.recv(CHUNK):
                chunks.put((time.monotonic() + delay, data))
        except OSError:
            pass
        chunks.put((time.monotonic() + delay, b""))

    def send() -> None:
        try:
            while True:
                due, data = chunks.get()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data:
                    dst.shutdown(socket.SHUT_WR)  # the end, after the same delay
                    return
                dst.sendall(data)
        except OSError:
            src.close()  # the other side is gone: stop reading too
            dst.close()

    threading.Thread(target=read, daemon=True).start()
    threading.Thread(target=send, daemon=True).start()


def exit_after(pid: int) -> None:
    """End this process (daemon threads and all) once process `pid` is gone."""

    def watch() -> None:
        while Path(f"/proc/{pid}").exists():
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def serve(listen: int, target: tuple[str, int], delay: float) -> None:
    server = socket.create_server(("127.0.0.1", listen), backlog=512)
    print(f"listening on {listen}", flush=True)
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection(target)
        except OSError:
            client.close()
            continue
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pump(client, upstream, delay)
        pump(upstream, client, delay)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--target", required=True, help="HOST:PORT of the real server")
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--pid-file", type=Path)
    parser.add_argument("--while-pid", type=int)
    args = parser.parse_args()
    if args.pid_file:
        args.pid_file.write_text(f"{os.getpid()}\n")
    if args.while_pid:
        exit_after(args.while_pid)
    host, _, port = args.target.rpartition(":")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    serve(args.listen, (host, int(port)), args.delay_ms / 1000)


if __name__ == "__main__":
    main()
