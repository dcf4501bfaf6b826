"""kill -9 under write load, five times over: nothing acknowledged is lost or changed."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers_process import (
    Server,
    call,
    call_json,
    db_rows,
    login_token,
    started,
    wait_until_ready,
)

pytestmark = pytest.mark.process

CYCLES = 5
PRODUCT_WRITERS = 3
SIGNUP_WRITERS = 2  # each signup hashes a password (~0.1 s): few of them
MIN_ACKED_BEFORE_KILL = 3  # products (and one user) acknowledged before the kill may come
MAX_EXTRA_SECONDS = 0.8  # then the kill comes at a random moment within this


@dataclass
class Acknowledged:
    """Writes the server answered 2xx to, gathered by the client threads."""

    products: dict[int, dict[str, object]] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # username -> password
    mismatches: list[tuple[object, object]] = field(default_factory=list)  # sent, answered
    lock: threading.Lock = field(default_factory=threading.Lock)
    this_cycle: int = 0  # products acknowledged since the last restart
    users_this_cycle: int = 0


def write_products(server: Server, acked: Acknowledged, stop: threading.Event, tag: str) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        body = {"name": f"{tag}-{n}", "price": n + 0.5, "description": f"crash {tag} {n}"}
        try:
            status, _, raw = call(server, "POST", "/products/", body, timeout=5)
            created = json.loads(raw)
        except (OSError, http.client.HTTPException, ValueError):
            continue  # no acknowledgement: this write may or may not have happened
        if status == 201:
            with acked.lock:
                if {k: created.get(k) for k in body} != body:
                    acked.mismatches.append((body, created))
                acked.products[created["id"]] = created
                acked.this_cycle += 1


def write_users(server: Server, acked: Acknowledged, stop: threading.Event, tag: str) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        username, password = f"{tag}-{n}", f"password-{tag}-{n}"
        try:
            status, _, _ = call(
                server, "POST", "/users/signup", {"username": username, "password": password}
            )
        except (OSError, http.client.HTTPException):
            continue
        if status == 201:
            with acked.lock:
                acked.users[username] = password
                acked.users_this_cycle += 1


def wait_for_acks(acked: Acknowledged, server: Server) -> None:
    deadline = time.monotonic() + 20
    while acked.this_cycle < MIN_ACKED_BEFORE_KILL or acked.users_this_cycle < 1:
        assert time.monotonic() < deadline, f"no writes acknowledged:\n{server.stderr()}"
        assert server.process.poll() is None, server.stderr()
        time.sleep(0.02)


def check_file(database: Path | str, acked: Acknowledged) -> None:
    """The database straight after the kill, before any server touches it again."""
    if isinstance(database, Path):  # SQLite's own checks of the file
        assert db_rows(database, "PRAGMA integrity_check") == [("ok",)]
        assert db_rows(database, "PRAGMA foreign_key_check") == []
    stored = {row[0] for row in db_rows(database, "SELECT id FROM products")}
    assert set(acked.products) <= stored, sorted(set(acked.products) - stored)
    names = {row[0] for row in db_rows(database, "SELECT username FROM users")}
    assert set(acked.users) <= names, sorted(set(acked.users) - names)


def check_served(server: Server, acked: Acknowledged, logged_in: set[str]) -> None:
    """Every acknowledged product reads back identical; every acknowledged user logs in."""
    # Every page, to the end: the database may hold more than was acknowledged (a write
    # committed whose answer the kill cut off), so a count cannot say when to stop.
    served: dict[int, object] = {}
    while page := call_json(server, "GET", f"/products/?limit=1000&skip={len(served)}")["data"]:
        served.update((product["id"], product) for product in page)
    for product_id, product in acked.products.items():
        assert served.get(product_id) == product, (product_id, product, served.get(product_id))
    for username, password in acked.users.items():
        if username not in logged_in:
            login_token(server, username, password)
            logged_in.add(username)


def test_kill_9_under_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    seed = random.randrange(1 << 32)
    print(f"random seed {seed}")
    rng = random.Random(seed)
    acked = Acknowledged()
    logged_in: set[str] = set()
    for cycle in range(CYCLES):
        with started(tmp_path) as server:
            # A restart after kill -9 is ready with no manual step (stale WAL, no cleanup).
            wait_until_ready(server)
            check_served(server, acked, logged_in)
            acked.this_cycle = acked.users_this_cycle = 0
            stop = threading.Event()
            writers = [
                *(
                    threading.Thread(
                        target=write_products, args=(server, acked, stop, f"p{cycle}{i}")
                    )
                    for i in range(PRODUCT_WRITERS)
                ),
                *(
                    threading.Thread(target=write_users, args=(server, acked, stop, f"u{cycle}{i}"))
                    for i in range(SIGNUP_WRITERS)
                ),
            ]
            for writer in writers:
                writer.start()
            try:
                wait_for_acks(acked, server)
                time.sleep(rng.uniform(0, MAX_EXTRA_SECONDS))  # the random moment of the kill
                server.process.kill()
                server.process.wait(timeout=10)
            finally:
                stop.set()
                for writer in writers:
                    writer.join(timeout=30)
            assert acked.this_cycle >= MIN_ACKED_BEFORE_KILL
            assert acked.mismatches == []
        check_file(server.database, acked)
        print(
            f"cycle {cycle}: {len(acked.products)} products, {len(acked.users)} users acknowledged"
        )

    with started(tmp_path) as server:
        wait_until_ready(server)
        check_served(server, acked, logged_in)
        assert logged_in == set(acked.users)
        assert len(acked.users) >= CYCLES, "too few signups acknowledged to mean anything"
        status, _, _ = call(server, "POST", "/products/", {"name": "after", "price": 1})
        assert status == 201
        assert "Traceback" not in server.stderr()
