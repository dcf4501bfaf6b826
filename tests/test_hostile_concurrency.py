"""Many clients at once against a real run.py: one winner, no lost or mixed-up writes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers_process import (
    ADMIN_PASSWORD,
    Req,
    Server,
    bearer,
    call,
    call_json,
    create_superuser,
    db_rows,
    login,
    login_token,
    parallel,
    serving,
)

pytestmark = pytest.mark.process

PRODUCT_FIELDS = ("name", "price", "in_stock", "description")


def active_superusers(server: Server) -> list[str]:
    rows = db_rows(server.database, "SELECT username FROM users WHERE is_superuser AND is_active")
    return sorted(row[0] for row in rows)


def test_parallel_signups_of_one_username_have_exactly_one_winner(tmp_path: Path) -> None:
    # The same name in different cases: usernames are unique case-insensitively.
    names = [("Racer" if i % 2 else "racer") for i in range(20)]
    bodies = [{"username": names[i], "password": f"password-number-{i}"} for i in range(20)]
    with serving(tmp_path) as server:
        replies = parallel(server, [Req("POST", "/users/signup", json=b) for b in bodies])

        statuses = Counter(reply.status for reply in replies)
        assert statuses == {201: 1, 409: 19}, [(r.status, r.body) for r in replies]
        for reply in replies:
            if reply.status == 409:
                assert reply.headers["Content-Type"].startswith("application/problem+json")
                assert reply.json()["detail"] == "The user with this username already exists"
        winner = next(i for i, reply in enumerate(replies) if reply.status == 201)
        assert replies[winner].json()["username"] == names[winner]

        rows = db_rows(
            server.database, "SELECT username FROM users WHERE lower(username) = ?", ("racer",)
        )
        assert rows == [(names[winner],)]
        # The winner's password logs in; a loser's (never stored) does not.
        login_token(server, "RACER", bodies[winner]["password"])
        loser = (winner + 1) % 20
        status, _, body = login(server, "racer", bodies[loser]["password"])
        assert status == 401, body
        assert "Traceback" not in server.stderr()


def test_parallel_product_creations_get_distinct_ids_and_are_all_readable(
    tmp_path: Path,
) -> None:
    bodies = [
        {"name": f"Item {i:03}", "price": i + 0.25, "in_stock": i % 3 != 0, "description": f"#{i}"}
        for i in range(100)
    ]
    with serving(tmp_path) as server:
        replies = parallel(server, [Req("POST", "/products/", json=b) for b in bodies])

        assert [reply.status for reply in replies] == [201] * 100, [
            (r.status, r.body) for r in replies if r.status != 201
        ]
        created = [reply.json() for reply in replies]
        ids = [product["id"] for product in created]
        assert len(set(ids)) == 100
        for body, product, reply in zip(bodies, created, replies, strict=True):
            assert {k: product[k] for k in PRODUCT_FIELDS} == body
            assert reply.headers["Location"] == f"/products/{product['id']}"

        reads = parallel(server, [Req("GET", f"/products/{i}") for i in ids])
        assert [read.status for read in reads] == [200] * 100
        assert [read.json() for read in reads] == created
        page = call_json(server, "GET", "/products/?limit=1000")
        assert page["count"] == 100
        assert sorted(p["id"] for p in page["data"]) == sorted(ids)


def test_parallel_full_puts_leave_exactly_one_of_the_bodies(tmp_path: Path) -> None:
    bodies = [
        {"name": f"Version {i}", "price": 100 + i, "in_stock": i % 2 == 0, "description": f"v{i}"}
        for i in range(50)
    ]
    with serving(tmp_path) as server:
        product = call_json(server, "POST", "/products/", {"name": "Original", "price": 1})
        path = f"/products/{product['id']}"

        replies = parallel(server, [Req("PUT", path, json=body) for body in bodies])

        assert [reply.status for reply in replies] == [200] * 50, [
            (r.status, r.body) for r in replies if r.status != 200
        ]
        # Each reply shows its own body, whole: no update saw another one's half.
        for body, reply in zip(bodies, replies, strict=True):
            assert {k: reply.json()[k] for k in PRODUCT_FIELDS} == body
        final = call_json(server, "GET", path)
        assert {k: final[k] for k in PRODUCT_FIELDS} in bodies, final
        row = db_rows(
            server.database,
            "SELECT name, description FROM products WHERE id = ?",
            (product["id"],),
        )
        assert row == [(final["name"], final["description"])]


def test_parallel_deletes_of_one_user_delete_it_once(tmp_path: Path) -> None:
    create_superuser(tmp_path)
    with serving(tmp_path) as server:
        admin = bearer(login_token(server, "admin", ADMIN_PASSWORD))
        user = call_json(
            server, "POST", "/users/signup", {"username": "doomed", "password": "p" * 12}
        )
        path = f"/users/{user['id']}"

        replies = parallel(server, [Req("DELETE", path, headers=admin) for _ in range(5)])

        statuses = sorted(reply.status for reply in replies)
        assert statuses == [204, 404, 404, 404, 404], [(r.status, r.body) for r in replies]
        for reply in replies:
            if reply.status == 404:
                assert reply.headers["Content-Type"].startswith("application/problem+json")
        assert db_rows(server.database, "SELECT id FROM users WHERE id = ?", (user["id"],)) == []
        status, _, _ = call(server, "GET", "/users/doomed", headers=admin)
        assert status == 404
        status, _, body = login(server, "doomed", "p" * 12)
        assert status == 401, body


def test_two_superusers_demoting_at_once_keep_an_active_superuser(tmp_path: Path) -> None:
    create_superuser(tmp_path)
    with serving(tmp_path) as server:
        admin = bearer(login_token(server, "admin", ADMIN_PASSWORD))
        admin_id = call_json(server, "GET", "/users/me", headers=admin)["id"]
        second = call_json(
            server,
            "POST",
            "/users/",
            {"username": "second", "password": "second-password", "is_superuser": True},
            headers=admin,
        )
        other = bearer(login_token(server, "second", "second-password"))
        demote = {"is_superuser": False}
        rounds = {
            # each demotes the other
            "each other": [
                Req("PATCH", f"/users/{second['id']}", json=demote, headers=admin),
                Req("PATCH", f"/users/{admin_id}", json=demote, headers=other),
            ],
            # each demotes himself
            "themselves": [
                Req("PATCH", f"/users/{admin_id}", json=demote, headers=admin),
                Req("PATCH", f"/users/{second['id']}", json=demote, headers=other),
            ],
        }
        for name, requests in [*rounds.items()] * 3:
            replies = parallel(server, requests)

            outcome = sorted(reply.status for reply in replies)
            assert outcome[0] == 200 and outcome[1] in (403, 409), (name, replies)
            survivors = active_superusers(server)
            assert len(survivors) == 1, (name, survivors, [r.body for r in replies])
            refused = next(reply for reply in replies if reply.status != 200)
            assert refused.headers["Content-Type"].startswith("application/problem+json")
            # Put the demoted one back for the next round, through the one who stayed.
            stayed = admin if survivors == ["admin"] else other
            demoted_id = second["id"] if survivors == ["admin"] else admin_id
            body = call_json(
                server, "PATCH", f"/users/{demoted_id}", {"is_superuser": True}, headers=stayed
            )
            assert body["is_superuser"] is True, json.dumps(body)
            assert len(active_superusers(server)) == 2
