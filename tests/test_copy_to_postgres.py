"""`run.py copy-to-postgres`: data made through the app on SQLite, served by it on PostgreSQL.

The tests need both engines, so they run in every session, SQLite's (`make test`) and
PostgreSQL's: each makes its own databases on the server at TEST_POSTGRES_URL and drops
them afterwards. An unreachable server fails them (CI always has one), it never skips them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pyotp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yoyo import get_backend, read_migrations

from service.app import create_app
from service.create_superuser import create_superuser
from service.db import copy_to_postgres, migrations
from service.db.dialect import Dialect
from service.db.postgres import WRITE_LOCK_KEY
from service.settings import Settings, redacted_url
from tests import engines
from tests.conftest import TEST_SECRET_KEY
from tests.log_hygiene import remember, remember_token

# From SQLite to PostgreSQL whatever the session's engine, so once: in `make test`.
pytestmark = [
    pytest.mark.sqlite_only("copies a SQLite file, whatever TEST_ENGINE is"),
    pytest.mark.needs_postgresql,
]

Client = TestClient[web.Request, web.Application]

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_FAILURES = 3
PASSWORDS = {
    name: remember(f"{name}'s password, long enough", "a test user's password")
    for name in ("root", "alice", "bob", "carol", "dave")
}
URL_PASSWORD = remember("the-url-password-never-shown", "a password in DATABASE_URL")
TABLES = [table.name for table in copy_to_postgres.TABLES]


# --- databases of our own --------------------------------------------------------------


@contextlib.contextmanager
def postgres_database(*, migrated: bool = True) -> Iterator[str]:
    """A new database on the test server, with a password in its URL; dropped after."""
    with engines.own_database(migrated=migrated) as url:
        yield _with_password(url)


def _with_password(url: str) -> str:
    """The URL with URL_PASSWORD in it, unless it has one (trust auth ignores it)."""
    parts = urlsplit(url)
    if parts.password is not None or parts.username is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{URL_PASSWORD}@{host}"))


def sqlite_database(path: Path) -> Path:
    migrations.apply_pending(path)
    return path


def roll_back_newest(url: str) -> None:
    """Undo the newest migration: the schema of the version before this one."""
    backend = get_backend(url)
    try:
        known = read_migrations(str(migrations.migrations_dir(migrations.dialect_of(url))))
        with backend.lock():
            backend.rollback_migrations(backend.to_rollback(known)[:1])
    finally:
        backend.connection.close()


def pg_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    return engines.rows(url, sql)


def pg_execute(url: str, sql: str) -> None:
    """Run one statement and commit it."""
    with contextlib.closing(psycopg2.connect(url)) as connection, connection:  # then COMMIT
        connection.cursor().execute(sql)


def pg_counts(url: str) -> dict[str, int]:
    """The rows in each of the service's tables that the database has."""
    present = set(pg_tables(url))
    sql = "SELECT count(*) FROM {}"
    return {t: pg_rows(url, sql.format(t))[0][0] for t in TABLES if t in present}


def sqlite_counts(path: Path) -> dict[str, int]:
    return {t: sqlite_rows(path, f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}


def pg_tables(url: str) -> list[str]:
    sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    return sorted(row[0] for row in pg_rows(url, sql))


def sqlite_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return list(connection.execute(sql).fetchall())


def copy_command(source: Path, url: str) -> subprocess.CompletedProcess[str]:
    """The command as an operator types it: `python run.py copy-to-postgres ...`."""
    return subprocess.run(
        [sys.executable, "run.py", "copy-to-postgres", "--from", str(source), "--to", url],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def app_settings(log_dir: Path, **database: Any) -> Settings:
    return Settings(
        **database,
        log_file=log_dir / "app.log",
        log_stderr=False,
        secret_key=TEST_SECRET_KEY,
        login_max_failures=MAX_FAILURES,
        mail_url=f"file:{log_dir / 'mail'}",
    )


# --- a SQLite database filled through the app, then copied -----------------------------


Answer = tuple[int, Any, str | None]  # status, body, ETag


@dataclass
class Filled:
    """A SQLite database the app wrote, and what the app answered from it."""

    sqlite: Path
    user_ids: dict[str, int] = field(default_factory=dict)
    product_ids: list[int] = field(default_factory=list)
    deleted_product: int = 0
    deleted_user: int = 0
    answers: dict[str, Answer] = field(default_factory=dict)  # by the GET's path
    alice: dict[str, str] = field(default_factory=dict)  # the tokens of her session
    root_token: str = ""
    bob_totp_secret: str = ""  # pending: bob started enrolling in two-factor login


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    """Made once: argon2 makes every signup and login cost ~0.1 s."""
    home = tmp_path_factory.mktemp("copy")
    result = Filled(sqlite_database(home / "products.db"))
    asyncio.run(_fill(app_settings(home / "sqlite", database_path=result.sqlite), result))
    return result


@pytest.fixture
async def on_postgres(filled: Filled, tmp_path: Path) -> AsyncIterator[Client]:
    """The app, started on a new PostgreSQL database the SQLite one was copied into."""
    with postgres_database() as url:
        await copy_to_postgres.copy(filled.sqlite, url)
        settings = app_settings(tmp_path, postgres_url=url)
        async with TestClient(TestServer(create_app(settings))) as client:
            yield client  # closed before the database is dropped


async def _fill(settings: Settings, filled: Filled) -> None:
    """Every table gets rows through the app; the newest user and product are deleted."""
    await create_superuser(settings, "root", PASSWORDS["root"])
    async with TestClient(TestServer(create_app(settings))) as client:
        await _sign_up(client, filled)
        await _add_products(client, filled)
        first = await _log_in(client, "alice")
        refresh = {"refresh_token": first["refresh_token"]}
        refreshed = remember_tokens(await _json(client.post("/login/refresh", json=refresh), 200))
        filled.alice = {
            "spent": first["refresh_token"],
            "refresh": refreshed["refresh_token"],
            "access": refreshed["access_token"],
        }
        for _ in range(MAX_FAILURES):  # mallory is locked out from now on
            assert (await client.post("/login/access-token", data=MALLORY)).status == 401
        # A verification token and its message in the outbox.
        verify = client.post("/users/me/verify-email", headers=bearer(filled.alice["access"]))
        await _json(verify, 202)
        await _enroll_bob(client, filled)
        await _remember_answers(client, filled)
    with contextlib.closing(sqlite3.connect(filled.sqlite)) as connection, connection:
        connection.execute("UPDATE users SET email_verified = 1 WHERE username = 'bob'")


async def _sign_up(client: Client, filled: Filled) -> None:
    for name in ("alice", "bob", "carol", "dave"):
        body = {"username": name, "password": PASSWORDS[name], "email": f"{name}@example.com"}
        filled.user_ids[name] = (await _json(client.post("/users/signup", json=body), 201))["id"]
    filled.root_token = (await _log_in(client, "root"))["access_token"]
    root = bearer(filled.root_token)
    carol, dave = filled.user_ids["carol"], filled.user_ids["dave"]
    await _json(client.patch(f"/users/{carol}", json={"is_active": False}, headers=root), 200)
    assert (await client.delete(f"/users/{dave}", headers=root)).status == 204
    filled.deleted_user = dave


async def _enroll_bob(client: Client, filled: Filled) -> None:
    """A pending TOTP secret: sealed under SECRET_KEY, it must open on PostgreSQL too."""
    bob = bearer((await _log_in(client, "bob"))["access_token"])
    enroll = client.post("/users/me/totp", json={"password": PASSWORDS["bob"]}, headers=bob)
    filled.bob_totp_secret = remember((await _json(enroll, 200))["secret"], "a TOTP secret")


async def _add_products(client: Client, filled: Filled) -> None:
    for product in (
        {"name": "Tea", "price": 4.5},
        {"name": "Coffee", "price": 12.25, "in_stock": False, "description": "Ground"},
        {"name": "Cake", "price": 3},
    ):
        created = await _json(client.post("/products/", json=product), 201)
        filled.product_ids.append(created["id"])
    await _json(client.patch(f"/products/{filled.product_ids[0]}", json={"price": 5}), 200)
    filled.deleted_product = filled.product_ids.pop()  # the newest: max(id) is now below it
    assert (await client.delete(f"/products/{filled.deleted_product}")).status == 204


async def _remember_answers(client: Client, filled: Filled) -> None:
    """GETs whose answers must read the same from PostgreSQL after the move."""
    ids = [*filled.product_ids, filled.deleted_product]
    requests: list[tuple[str, dict[str, str]]] = [(f"/products/{n}", {}) for n in ids]
    requests += [("/products/?sort=-price", {}), ("/products/?q=co", {})]
    requests += [("/users/", bearer(filled.root_token))]
    requests += [(path, bearer(filled.alice["access"])) for path in ME]
    for path, headers in requests:
        filled.answers[path] = await _answer(client, path, headers)


ME = ("/users/me", "/users/me/sessions")
MALLORY = {"username": "mallory", "password": "guessing, badly"}


async def _answer(client: Client, path: str, headers: dict[str, str]) -> Answer:
    response = await client.get(path, headers=headers)
    return response.status, await response.json(), response.headers.get("ETag")


async def _json(request: Any, status: int) -> Any:
    response = await request
    body = await response.json()
    assert response.status == status, body
    return body


async def _log_in(client: Client, name: str) -> dict[str, str]:
    form = {"username": name, "password": PASSWORDS[name]}
    return remember_tokens(await _json(client.post("/login/access-token", data=form), 200))


def remember_tokens(tokens: dict[str, str]) -> dict[str, str]:
    remember_token(tokens["access_token"])
    remember(tokens["refresh_token"], "a refresh token")
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the move --------------------------------------------------------------------------


def test_prints_a_line_per_table_and_exits_0(filled: Filled) -> None:
    with postgres_database() as url:
        result = copy_command(filled.sqlite, url)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            f"users: 4 rows copied, next id {filled.deleted_user + 1}",
            f"products: 2 rows copied, next id {filled.deleted_product + 1}",
            "login_failures: 1 row copied",
            "login_account_failures: 1 row copied",  # mallory's, from every address
            "sessions: 3 rows copied",  # root's, alice's and bob's
            "spent_refresh_tokens: 1 row copied",  # alice's first refresh token
            "account_tokens: 1 row copied",  # alice's email verification
            "outbox: 1 row copied, next id 2",  # its message
            "totp_secrets: 1 row copied",  # bob's, pending
            "totp_recovery_codes: 0 rows copied",
            "mfa_challenges: 0 rows copied",
            f"copied {filled.sqlite} into {redacted_url(url)} in one transaction",
        ]
        assert pg_counts(url) == sqlite_counts(filled.sqlite)
    assert URL_PASSWORD not in result.stdout + result.stderr


async def test_users_log_in_with_their_passwords(on_postgres: Client) -> None:
    for name in ("root", "alice", "bob"):
        token = (await _log_in(on_postgres, name))["access_token"]
        me = await _json(on_postgres.get("/users/me", headers=bearer(token)), 200)
        assert (me["username"], me["is_superuser"]) == (name, name == "root")
    for name, status in (("carol", 400), ("dave", 401)):  # inactive; deleted
        form = {"username": name, "password": PASSWORDS[name]}
        assert (await on_postgres.post("/login/access-token", data=form)).status == status


async def test_everything_reads_back_as_it_did_on_sqlite(
    filled: Filled, on_postgres: Client
) -> None:
    """Products (bodies, ETags), the user list, a session's own view: the same answers,
    with tokens issued on SQLite (the same SECRET_KEY, the same sessions)."""
    for path, before in filled.answers.items():
        if path == "/users/":
            headers = bearer(filled.root_token)
        else:
            headers = bearer(filled.alice["access"]) if path in ME else {}
        assert await _answer(on_postgres, path, headers) == before, path
    assert filled.answers[f"/products/{filled.deleted_product}"][0] == 404
    assert filled.answers["/users/"][1]["count"] == 4


def test_verification_state_tokens_and_the_outbox_carry_over(filled: Filled) -> None:
    with postgres_database() as url:
        asyncio.run(copy_to_postgres.copy(filled.sqlite, url))
        verified = "SELECT username FROM users WHERE email_verified ORDER BY id"
        assert pg_rows(url, verified) == [("bob",)]
        columns = "token_hash, purpose, user_id, email, expires_at"
        assert pg_rows(url, f"SELECT {columns} FROM account_tokens") == sqlite_rows(
            filled.sqlite, f"SELECT {columns} FROM account_tokens"
        )
        columns = "id, recipient, subject, body_text, status, attempts, created_at"
        assert pg_rows(url, f"SELECT {columns} FROM outbox") == sqlite_rows(
            filled.sqlite, f"SELECT {columns} FROM outbox"
        )


async def test_a_pending_totp_secret_carries_over(filled: Filled, on_postgres: Client) -> None:
    bob = bearer((await _log_in(on_postgres, "bob"))["access_token"])
    code = pyotp.TOTP(filled.bob_totp_secret).now()
    confirm = on_postgres.post("/users/me/totp/confirm", json={"code": code}, headers=bob)
    codes = (await _json(confirm, 200))["recovery_codes"]
    assert len([remember(c, "a recovery code") for c in codes]) == 10


async def test_login_throttling_carries_over(on_postgres: Client) -> None:
    response = await on_postgres.post("/login/access-token", data=MALLORY)
    assert response.status == 429
    assert int(response.headers["Retry-After"]) > 0


async def test_a_spent_refresh_token_is_still_refused(filled: Filled, on_postgres: Client) -> None:
    """Replaying the token spent on SQLite is theft on PostgreSQL too: the session ends."""
    spent, current = filled.alice["spent"], filled.alice["refresh"]
    replay = await on_postgres.post("/login/refresh", json={"refresh_token": spent})
    assert replay.status == 401
    me = await on_postgres.get("/users/me", headers=bearer(filled.alice["access"]))
    assert me.status == 401
    again = await on_postgres.post("/login/refresh", json={"refresh_token": current})
    assert again.status == 401


async def test_new_ids_are_above_every_id_sqlite_gave(filled: Filled, on_postgres: Client) -> None:
    scone = await _json(on_postgres.post("/products/", json={"name": "Scone", "price": 2}), 201)
    erin = {"username": "erin", "password": PASSWORDS["dave"]}
    user = await _json(on_postgres.post("/users/signup", json=erin), 201)
    assert scone["id"] == filled.deleted_product + 1  # max(id) + 1 would be Cake's id again
    assert user["id"] == filled.deleted_user + 1


def test_the_copy_names_every_column_of_both_schemas(filled: Filled) -> None:
    """A migration that adds a column or a table fails here until the copy carries it."""
    with postgres_database() as url:
        assert set(pg_tables(url)) - YOYO_TABLES == set(TABLES)
        for table in copy_to_postgres.TABLES:
            info = sqlite_rows(filled.sqlite, f"PRAGMA table_info({table.name})")
            in_postgres = engines.rows(
                url,
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = ? ORDER BY ordinal_position",
                (table.name,),
            )
            assert list(table.columns) == [row[1] for row in info], table.name
            assert list(table.columns) == [row[0] for row in in_postgres], table.name
    in_sqlite = sqlite_rows(filled.sqlite, "SELECT name FROM sqlite_master WHERE type = 'table'")
    assert {row[0] for row in in_sqlite} - YOYO_TABLES - {"sqlite_sequence"} == set(TABLES)


YOYO_TABLES = {"_yoyo_log", "_yoyo_migration", "_yoyo_version", "yoyo_lock"}


# --- refusals: nothing changes ---------------------------------------------------------


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A migrated SQLite database with a user and a product in it."""
    path = sqlite_database(tmp_path / "products.db")
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(
            "INSERT INTO users (username, hashed_password, created_at, updated_at) "
            "VALUES ('alice', 'not a real hash', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')"
        )
        connection.execute(
            "INSERT INTO products (name, name_folded, price_cents, created_at, updated_at) "
            "VALUES ('Tea', 'tea', 450, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')"
        )
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """copy_to_postgres.main in this process: the exit code and everything it printed."""
    code = copy_to_postgres.main(list(argv))
    out, err = capsys.readouterr()
    assert URL_PASSWORD not in out + err
    return code, out + err


def test_refuses_a_target_that_holds_data(source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with postgres_database() as url:
        pg_execute(
            url,
            "INSERT INTO products (name, name_folded, price_cents, created_at, updated_at) "
            "VALUES ('Kept', 'kept', 1, 'now', 'now')",
        )
        before = pg_rows(url, "SELECT last_value FROM pg_sequences")
        code, output = run(capsys, "--from", str(source), "--to", url)
        assert code == 1
        assert f"error: {redacted_url(url)} already holds data (in products)" in output
        assert pg_counts(url) == {table: int(table == "products") for table in TABLES}
        assert pg_rows(url, "SELECT name FROM products") == [("Kept",)]
        assert pg_rows(url, "SELECT last_value FROM pg_sequences") == before


def test_waits_for_a_unit_of_work_in_progress_and_sees_its_rows(source: Path) -> None:
    """A node that is still serving writes under the service's lock: the copy waits its turn,
    then finds the node's committed row and refuses, instead of mixing the two."""
    with postgres_database() as url, contextlib.closing(psycopg2.connect(url)) as node:
        with node.cursor() as cursor:  # psycopg2 has opened a transaction: held until COMMIT
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
            cursor.execute(
                "INSERT INTO products (name, name_folded, price_cents, created_at, updated_at) "
                "VALUES ('Late', 'late', 1, 'now', 'now')"
            )
        copying = subprocess.Popen(
            [sys.executable, "run.py", "copy-to-postgres", "--from", str(source), "--to", url],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(1.5)
            assert copying.poll() is None, copying.communicate()  # waiting for the lock
        finally:
            node.commit()
            out, err = copying.communicate(timeout=30)
        assert copying.returncode == 1, out + err
        assert "already holds data (in products)" in err
        assert pg_rows(url, "SELECT name FROM products") == [("Late",)]
        assert pg_counts(url)["users"] == 0


@pytest.mark.parametrize("migrated", ["none", "all but the newest"])
def test_refuses_a_target_with_pending_migrations(
    source: Path, capsys: pytest.CaptureFixture[str], migrated: str
) -> None:
    with postgres_database(migrated=migrated != "none") as url:
        if migrated != "none":
            roll_back_newest(url)
        tables = pg_tables(url)
        code, output = run(capsys, "--from", str(source), "--to", url)
        assert code == 1
        assert f"error: {redacted_url(url)} has pending migrations (" in output
        assert f"yoyo apply --database {redacted_url(url)} sql/postgresql" in output
        assert pg_tables(url) == tables  # nothing created
        assert set(pg_counts(url).values()) <= {0}  # nothing copied


def test_refuses_a_sqlite_file_with_pending_migrations(
    source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roll_back_newest(f"sqlite:///{source}")
    with postgres_database() as url:
        code, output = run(capsys, "--from", str(source), "--to", url)
        assert code == 1
        newest = max(migrations.known_migration_ids(Dialect.SQLITE))
        assert f"error: {source} has pending migrations ({newest})" in output
        assert f"yoyo apply --database sqlite:///{source}" in output
        assert pg_counts(url) == dict.fromkeys(TABLES, 0)


def test_a_copy_that_fails_midway_leaves_nothing(
    source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Users are copied before products; a product PostgreSQL refuses undoes them too."""
    with contextlib.closing(sqlite3.connect(source)) as connection, connection:
        # PostgreSQL's text cannot hold a NUL; SQLite's can.
        connection.execute("UPDATE products SET description = ?", ("a NUL: \x00",))
    with postgres_database() as url:
        code, output = run(capsys, "--from", str(source), "--to", url)
        assert code == 1
        assert "error: the copy failed and was rolled back: " in output
        assert pg_counts(url) == dict.fromkeys(TABLES, 0)


def test_refuses_a_missing_sqlite_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "typo.db"
    code, output = run(capsys, "--from", str(missing), "--to", "postgresql://u@127.0.0.1/x")
    assert code == 1
    assert f"error: {missing}: no such SQLite database" in output
    assert not missing.exists()  # not created by looking


def test_refuses_an_unreachable_server(source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql://someone:{URL_PASSWORD}@127.0.0.1:1/nowhere"
    code, output = run(capsys, "--from", str(source), "--to", url)
    assert code == 1
    assert f"error: cannot read the migrations of {redacted_url(url)}: " in output


@pytest.mark.parametrize(
    "target", ["sqlite:///other.db", f"mysql://u:{URL_PASSWORD}@h/db", "postgresql://h"]
)
def test_the_target_must_be_a_postgresql_url(
    source: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        copy_to_postgres.main(["--from", str(source), "--to", target])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--to: expected postgresql://user[:password]@host/database" in err
    assert URL_PASSWORD not in err
