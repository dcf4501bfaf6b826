"""`python run.py create-superuser` and `python -m service.create_superuser`, as processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from pwdlib import PasswordHash

from service.app import create_app
from service.create_superuser import create_superuser
from service.db import migrations, open_database
from service.queries import users
from service.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.helpers_auth import Client, bearer, login, login_token, password_hash, user_body

REPO = Path(__file__).resolve().parents[1]
RUN_PY = [sys.executable, "run.py", "create-superuser"]
MODULE = [sys.executable, "-m", "service.create_superuser"]
CLEARED = ("SECRET_KEY", "ADMIN_PASSWORD", "DATABASE_PATH", "DATABASE_URL", "LOG_FILE")
CLEARED += ("LOG_JSON", "LOG_LEVEL")


def _env(db: Path | str, log_file: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    if isinstance(db, str):  # PostgreSQL: its URL, and the key it requires
        env |= {"DATABASE_URL": db, "SECRET_KEY": TEST_SECRET_KEY}
    else:
        env["DATABASE_PATH"] = str(db)
    return {**env, "LOG_FILE": str(log_file), **extra}


def _run(
    command: list[str], db: Path | str, log_file: Path, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=REPO,
        env=_env(db, log_file, **extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _rows(db: Path) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM users ORDER BY id")]


def _log_text(log_file: Path) -> str:
    return log_file.read_text(encoding="utf-8") if log_file.exists() else ""


def _verifies(password: str, hashed: str) -> bool:
    return PasswordHash.recommended().verify(password, hashed)


def test_run_py_creates_once_then_changes_nothing(tmp_path: Path) -> None:
    db, log_file = tmp_path / "cli.db", tmp_path / "logs" / "app.log"
    first = _run([*RUN_PY, "--password", "first-admin-pass"], db, log_file)
    assert first.returncode == 0, first.stderr
    assert "admin" in first.stdout and "first-admin-pass" in first.stdout
    [row] = _rows(db)
    assert row["username"] == "admin"
    assert row["is_superuser"] == 1 and row["is_active"] == 1
    assert _verifies("first-admin-pass", row["hashed_password"])

    second = _run([*RUN_PY, "--password", "second-admin-pass"], db, log_file)
    assert second.returncode == 0, second.stderr
    assert "exist" in (second.stdout + second.stderr).lower()
    assert "second-admin-pass" not in second.stdout + second.stderr
    assert _rows(db) == [row]  # hash, flags, timestamps: all unchanged
    log = _log_text(log_file)
    assert "first-admin-pass" not in log and "second-admin-pass" not in log


def test_module_form_takes_admin_password_and_username(tmp_path: Path) -> None:
    db, log_file = tmp_path / "cli.db", tmp_path / "logs" / "app.log"
    result = _run([*MODULE, "--username", "Root"], db, log_file, ADMIN_PASSWORD="from-the-env-123")
    assert result.returncode == 0, result.stderr
    assert "Root" in result.stdout and "from-the-env-123" in result.stdout
    [row] = _rows(db)
    assert row["username"] == "Root" and row["is_superuser"] == 1
    assert _verifies("from-the-env-123", row["hashed_password"])
    assert "from-the-env-123" not in _log_text(log_file)


def test_a_random_password_is_made_and_printed(tmp_path: Path) -> None:
    db, log_file = tmp_path / "cli.db", tmp_path / "logs" / "app.log"
    result = _run(MODULE, db, log_file)
    assert result.returncode == 0, result.stderr
    [row] = _rows(db)
    assert row["username"] == "admin"
    words = {w.strip("'\".,:;") for w in result.stdout.split()}
    printed = [w for w in words if len(w) >= 8 and _verifies(w, row["hashed_password"])]
    assert len(printed) == 1, result.stdout
    assert printed[0] not in _log_text(log_file)


def test_a_regular_users_name_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    db, log_file = tmp_path / "cli.db", tmp_path / "logs" / "app.log"
    migrations.apply_pending(db)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "INSERT INTO users (username, hashed_password, created_at, updated_at)"
            " VALUES ('admin', ?, '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')",
            (password_hash(),),
        )
    before = _rows(db)
    for command in (RUN_PY, MODULE):
        result = _run(
            [*command, "--username", "ADMIN", "--password", "takeover-pass"], db, log_file
        )
        assert result.returncode != 0, result.stdout
        assert "regular" in (result.stdout + result.stderr).lower()
        assert _rows(db) == before
    assert "takeover-pass" not in _log_text(log_file)


async def test_the_created_superuser_logs_in_over_the_api(
    aiohttp_client: Any, settings: Settings
) -> None:
    result = await asyncio.to_thread(
        _run,
        [*RUN_PY, "--password", "api-admin-pass"],
        settings.postgres_url or settings.database_path,
        settings.log_file,
    )
    assert result.returncode == 0, result.stderr
    client: Client = await aiohttp_client(create_app(settings))
    token = await login_token(client, "admin", "api-admin-pass")
    me = await user_body(await client.post("/login/test-token", headers=bearer(token)))
    assert me["username"] == "admin" and me["is_superuser"] is True and me["is_active"] is True
    assert (await client.get("/users/", headers=bearer(token))).status == 200
    assert (await login(client, "admin", "wrong-pass")).status == 401
    await client.close()
    assert "api-admin-pass" not in _log_text(settings.log_file)


async def test_a_regular_user_created_during_the_run_is_reported_not_ignored(
    migrated: Settings, monkeypatch: Any, capsys: Any
) -> None:
    """The name is free when checked, and a regular user takes it before the insert."""
    real_lookup = users.get_by_username
    calls = 0

    async def racing_lookup(conn: Any, *, username: str) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # the check sees no one; then someone signs up as that name
            await _insert_regular_user(migrated, username)
            return None
        return await real_lookup(conn, username=username)

    monkeypatch.setattr(users, "get_by_username", racing_lookup)
    code = await create_superuser(migrated, "admin", "raced-admin-pass")
    assert code != 0
    out = capsys.readouterr()
    assert "regular" in (out.out + out.err).lower()
    assert "raced-admin-pass" not in out.out + out.err
    database = await open_database(migrated)
    try:
        async with database.read() as conn:
            rows = await conn.fetch_all("SELECT username, is_superuser FROM users")
    finally:
        await database.close()
    assert [(row[0], bool(row[1])) for row in rows] == [("admin", False)]


async def _insert_regular_user(settings: Settings, username: str) -> None:
    """Another process signs up as `username` (its own connection, its own transaction)."""
    other = await open_database(settings, pool_size=1)
    try:
        async with other.transaction() as conn:
            await conn.execute(
                "INSERT INTO users (username, hashed_password, created_at, updated_at)"
                " VALUES (:name, 'x', '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')",
                {"name": username},
            )
    finally:
        await other.close()


def test_create_superuser_refuses_an_impossible_username(tmp_path: Path) -> None:
    """Found by review: a username the API would refuse was created from the command line."""
    db, log_file = tmp_path / "cli.db", tmp_path / "cli.log"
    result = _run([*RUN_PY, "--username", "bad name!"], db, log_file)
    assert result.returncode != 0
    assert "--username" in result.stderr
    assert not db.exists()


def test_help_names_the_command_as_the_other_subcommands_do(tmp_path: Path) -> None:
    """`usage: run.py create-superuser ...`, as `run.py migrate` says, not `usage: run.py`."""
    db, log_file = tmp_path / "cli.db", tmp_path / "cli.log"
    result = _run([*RUN_PY, "--help"], db, log_file)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: run.py create-superuser [-h]"), result.stdout
    assert not db.exists()
