"""Seed the server through its own API (stdlib only), for bench/run.sh.

Signs up a fresh regular user, logs in (writes token.txt and login_body.txt), checks
GET /users/me, then creates N products with POST /products/ (writes ids.txt, one id a line)
and, with --sessions N, logs in N more times (4 at once) for the refresh scenarios (writes
sessions.txt: one refresh token a line, each of its own session). Any non-2xx answer stops
it with the status and the start of the body.
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


class Client:
    """One keep-alive connection; reconnects once if the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=60)

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, object]:
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                status, data = response.status, response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                if attempt == 2:
                    raise
        if not 200 <= status < 300:
            sys.exit(f"seed.py: {method} {path} answered {status}: {data[:300]!r}")
        return json.loads(data) if data else {}

    def json_call(
        self, method: str, path: str, payload: dict[str, object], token: str
    ) -> dict[str, object]:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        return self.call(method, path, json.dumps(payload).encode(), headers)


def refresh_tokens(host: str, port: int, form: str, count: int) -> list[str]:
    """`count` fresh sessions of the bench user: their refresh tokens."""

    def log_in(_: int) -> str:
        login = Client(host, port).call(
            "POST",
            "/login/access-token",
            form.encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        return str(login["refresh_token"])

    with ThreadPoolExecutor(4) as pool:  # the server hashes 2 at a time: keep both busy
        return list(pool.map(log_in, range(count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="http://127.0.0.1:PORT")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=0)
    args = parser.parse_args()
    parts = urllib.parse.urlsplit(args.base)
    if parts.scheme != "http" or parts.hostname is None:
        sys.exit(f"seed.py: need an http:// base URL, got {args.base!r}")
    client = Client(parts.hostname, parts.port or 80)
    started = time.perf_counter()

    username = f"bench_{secrets.token_hex(4)}"
    password = f"bench-{secrets.token_hex(8)}"
    signup = {"username": username, "password": password, "email": f"{username}@example.com"}
    client.call(
        "POST", "/users/signup", json.dumps(signup).encode(), {"Content-Type": "application/json"}
    )
    form = urllib.parse.urlencode({"username": username, "password": password})
    login = client.call(
        "POST",
        "/login/access-token",
        form.encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    token = str(login["access_token"])
    client.call("GET", "/users/me", headers={"Authorization": f"Bearer {token}"})
    (args.out_dir / "token.txt").write_text(token)
    (args.out_dir / "login_body.txt").write_text(form)

    ids = []
    for i in range(1, args.products + 1):
        product = {
            "name": f"Bench product {i}",
            "description": f"Seeded product number {i}",
            "price": round(1 + (i % 500) * 0.37, 2),
            "in_stock": i % 3 != 0,
        }
        ids.append(client.json_call("POST", "/products/", product, token)["id"])
    if ids:
        client.call("GET", f"/products/{ids[0]}")
    (args.out_dir / "ids.txt").write_text("".join(f"{i}\n" for i in ids))
    sessions = refresh_tokens(client.host, client.port, form, args.sessions)
    (args.out_dir / "sessions.txt").write_text("".join(f"{t}\n" for t in sessions))
    elapsed = time.perf_counter() - started
    print(
        f"seeded user {username}, {len(ids)} products and {len(sessions)} sessions"
        f" in {elapsed:.1f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
