"""Bugs found while building the service, each kept as a test."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from service import keys
from service.app import create_app
from service.db import Database, DatabaseUnavailable, InvalidValue
from service.queries import products
from service.settings import Settings
from tests.conftest import ClientFactory, log_lines
from tests.helpers_auth import PASSWORD, auth, make_user, rows_named, user_row
from tests.test_products_api import create, problem, validation_errors

Client = TestClient[web.Request, web.Application]


@pytest.mark.parametrize("method", ["put", "patch"])
async def test_an_empty_update_body_changes_nothing(client: Client, method: str) -> None:
    # aiohttp-apispec's middleware stored `{}` as `[]`, and the handler failed with a 500.
    product = await create(client)
    response = await getattr(client, method)(f"/products/{product['id']}", json={})
    assert response.status == 200
    body = await response.json()
    assert {k: body[k] for k in ("name", "price", "in_stock")} == {
        "name": "Tea",
        "price": 4.5,
        "in_stock": True,
    }


@pytest.mark.parametrize("path", ["/products/01", "/products/0000000000000000001"])
async def test_non_canonical_ids_name_nothing(client: Client, path: str) -> None:
    await create(client)
    await problem(await client.get(path), 404)


@pytest.mark.parametrize("value", ["+5", "1_0", " 5", "\u0665", "5.0"])
async def test_page_parameters_are_plain_digits(client: Client, value: str) -> None:
    errors = await validation_errors(await client.get("/products/", params={"skip": value}))
    assert "skip" in errors


async def test_two_apps_in_one_process_start_and_stop(migrated: Settings) -> None:
    # Each app removed every loguru sink, so the second one's cleanup crashed.
    first = TestServer(create_app(migrated))
    second = TestServer(create_app(migrated))
    await first.start_server()
    await second.start_server()
    await first.close()
    await second.close()


# Found by review: each of these answered a 500, broke a rule, or leaked a secret.


async def test_a_username_with_a_trailing_newline_is_refused(client: Client) -> None:
    # `$` in re.match also matches before a final newline; the user was created and the
    # Location header then broke the response.
    response = await client.post(
        "/users/signup", json={"username": "bob\n", "password": "correct horse battery"}
    )
    errors = await validation_errors(response)
    assert "username" in errors


async def test_a_price_filter_with_a_trailing_newline_is_refused(client: Client) -> None:
    errors = await validation_errors(await client.get("/products/", params={"min_price": "5\n"}))
    assert "min_price" in errors


async def test_a_non_ascii_bearer_token_is_401(client: Client) -> None:
    response = await client.get("/users/me", headers={"Authorization": "Bearer abc\u00e9.d.e"})
    await problem(response, 401)


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nusername=a&password=Hunter2Secret\r\n--b--",
            415,
        ),
        ("application/x-www-form-urlencoded; charset=utf-16", b"username=a&password=b", 400),
        ("application/x-www-form-urlencoded", b"username=\xff&password=Hunter2Secret", 400),
    ],
)
async def test_unreadable_login_forms_are_4xx_and_leak_nothing(
    client: Client, migrated: Settings, content_type: str, body: bytes, status: int
) -> None:
    response = await client.post(
        "/login/access-token", data=body, headers={"Content-Type": content_type}
    )
    await problem(response, status)
    assert "Hunter2Secret" not in "\n".join(log_lines(migrated))


async def test_a_body_that_does_not_inflate_is_400(client: Client) -> None:
    response = await client.post(
        "/products/",
        data=b"this is not gzip",
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    await problem(response, 400)


async def test_parallel_wrong_logins_cannot_slip_under_the_limit(
    aiohttp_client: ClientFactory, migrated: Settings, database: Database
) -> None:
    strict = dataclasses.replace(migrated, login_max_failures=3)
    client: Client = await aiohttp_client(create_app(strict))  # type: ignore[assignment]
    await make_user(database, "alice")
    attempts = [
        client.post("/login/access-token", data={"username": "alice", "password": "wrong!"})
        for _ in range(10)
    ]
    statuses = sorted(response.status for response in await asyncio.gather(*attempts))
    assert statuses == [401] * 3 + [429] * 7


async def test_a_demotion_racing_a_password_change_is_not_undone(
    client: Client, database: Database
) -> None:
    # The password route wrote back the caller as the auth middleware had read him.
    await make_user(database, "root", is_superuser=True)
    eve = await make_user(database, "eve", is_superuser=True)
    app = client.app
    assert app is not None
    hasher = app[keys.PASSWORDS]
    demoted, real_hash = asyncio.Event(), hasher.hash

    async def slow_hash(password: str) -> str:
        await demoted.wait()
        return await real_hash(password)

    hasher.hash = slow_hash  # type: ignore[method-assign]
    change = asyncio.create_task(
        client.patch(
            "/users/me/password",
            json={"current_password": PASSWORD, "new_password": "a brand new secret"},
            headers=await auth(database, eve.id),
        )
    )
    await asyncio.sleep(0.3)  # eve's request is now waiting in the hash
    root_headers = await auth(database, (await user_by_name(database, "root"))["id"])
    demote = await client.patch(
        f"/users/{eve.id}", json={"is_superuser": False, "is_active": False}, headers=root_headers
    )
    assert demote.status == 200
    demoted.set()
    assert (await change).status == 204
    row = await user_row(database, eve.id)
    assert row is not None
    assert (row["is_superuser"], row["is_active"]) == (0, 0)


async def user_by_name(database: Database, username: str) -> dict[str, Any]:
    rows = await rows_named(database, username)
    return rows[0]


def test_create_superuser_refuses_an_impossible_username(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    result = subprocess.run(
        [sys.executable, "run.py", "create-superuser", "--username", "bad name!"],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "DATABASE_PATH": str(db), "LOG_FILE": str(tmp_path / "cli.log")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "--username" in result.stderr
    assert not db.exists()


async def test_an_unreachable_database_is_a_retryable_503_not_a_500(
    client: Client, monkeypatch: pytest.MonkeyPatch, migrated: Settings
) -> None:
    """PostgreSQL restarting or out of reach: clients are told to retry, and it is logged."""

    async def unreachable(*_: Any, **__: Any) -> Any:
        raise DatabaseUnavailable("OSError: connect call failed")

    monkeypatch.setattr(products, "list_products", unreachable)
    response = await client.get("/products/")
    body = await problem(response, 503)
    assert response.headers["Retry-After"] == "5"
    assert "database" in body["detail"].lower()
    assert any("Database unavailable in GET /products/" in line for line in log_lines(migrated))


async def test_a_session_id_or_username_with_a_nul_names_nothing(
    client: Client, database: Database
) -> None:
    """PostgreSQL cannot even compare text holding a NUL: such names must not reach it."""
    root = await make_user(database, "root", is_superuser=True)
    headers = await auth(database, root.id)
    for path in ("/users/me/sessions/ab%00c", "/users/al%00ice", "/users/al%ED%A0%80ice"):
        response = await client.request(
            "DELETE" if "sessions" in path else "GET", URL(path, encoded=True), headers=headers
        )
        await problem(response, 404)


async def test_a_value_the_database_refuses_is_a_400_not_a_500(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(*_: Any, **__: Any) -> Any:
        raise InvalidValue("CharacterNotInRepertoireError")

    monkeypatch.setattr(products, "list_products", refused)
    body = await problem(await client.get("/products/"), 400)
    assert "NUL" in body["detail"]


async def test_a_user_agent_with_undecodable_bytes_still_logs_in(
    client: Client, database: Database
) -> None:
    """aiohttp keeps such bytes as lone surrogates, which no database can store as text."""
    await make_user(database, "alice")
    form = f"username=alice&password={PASSWORD}".encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(
        b"POST /login/access-token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"User-Agent: probe\xff\xfe\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {len(form)}\r\n\r\n".encode()
        + form
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    async with database.read() as conn:
        stored = await conn.fetch_all("SELECT user_agent FROM sessions")
    assert "probe\ufffd\ufffd" in [row[0] for row in stored]
