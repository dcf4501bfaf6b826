"""Files the service creates are owner-only; a key file others can read stops the start."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers_process import (
    call,
    database_of,
    environment,
    gunicorn_started,
    run_to_exit,
    serving,
)

pytestmark = pytest.mark.process

KEY = "k" * 64  # a key file's content: 64 characters, as the service generates them


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextlib.contextmanager
def usual_umask() -> Iterator[None]:
    """The umask most systems give (022): files are 0644 unless created owner-only."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.sqlite_only("the database files are SQLite's")
def test_the_database_its_wal_and_shm_and_their_folder_are_owner_only(tmp_path: Path) -> None:
    database = database_of(tmp_path)
    assert isinstance(database, Path)
    with usual_umask(), serving(tmp_path, SECRET_KEY="") as server:
        body = {"username": "modes_alice", "password": "modes-password-123"}
        assert call(server, "POST", "/users/signup", body)[0] == 201  # a write: the WAL
        files = [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
        modes = {path.name: f"{mode(path):04o}" for path in files}
        key_file = database.with_name(database.name + ".secret_key")
        modes[key_file.name] = f"{mode(key_file):04o}"
        modes["folder"] = f"{mode(database.parent):04o}"
    assert modes == {
        "app.db": "0600",
        "app.db-wal": "0600",
        "app.db-shm": "0600",
        "app.db.secret_key": "0600",
        "folder": "0700",
    }


def test_the_log_file_and_its_folder_are_owner_only(tmp_path: Path) -> None:
    log_file = Path(environment(tmp_path)["LOG_FILE"])
    with usual_umask(), serving(tmp_path) as server:
        assert call(server, "GET", "/health")[0] == 200
        assert log_file.exists()
        modes = {"log": f"{mode(log_file):04o}", "folder": f"{mode(log_file.parent):04o}"}
    assert modes == {"log": "0600", "folder": "0700"}


def key_file_open_to_others(tmp_path: Path) -> Path:
    """The generated key's file, as a careless copy leaves it: 0644."""
    database = tmp_path / "data" / "app.db"
    key_file = database.with_name(database.name + ".secret_key")
    key_file.parent.mkdir(parents=True)
    key_file.write_text(KEY, encoding="ascii")
    key_file.chmod(0o644)
    return key_file


@pytest.mark.sqlite_only("the key file is used only without SECRET_KEY, which PostgreSQL needs")
def test_run_py_refuses_to_start_with_a_key_file_others_can_read(tmp_path: Path) -> None:
    key_file = key_file_open_to_others(tmp_path)
    result = run_to_exit(tmp_path, SECRET_KEY="")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: {key_file} is open to other users (mode 0644): "
        f"run `chmod 600 {key_file}`, or delete it to generate a new key"
    ]


@pytest.mark.sqlite_only("the key file is used only without SECRET_KEY, which PostgreSQL needs")
def test_run_py_refuses_to_start_with_a_key_file_another_user_owns(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")
    key_file = key_file_open_to_others(tmp_path)
    key_file.chmod(0o600)
    os.chown(key_file, 65534, 65534)  # nobody
    result = run_to_exit(tmp_path, SECRET_KEY="")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {key_file} is owned by uid 65534, not by this user")


@pytest.mark.sqlite_only("the key file is used only without SECRET_KEY, which PostgreSQL needs")
def test_a_gunicorn_worker_refuses_to_start_with_a_key_file_others_can_read(
    tmp_path: Path,
) -> None:
    key_file = key_file_open_to_others(tmp_path)
    with gunicorn_started(tmp_path, SECRET_KEY="") as server:
        assert server.process.wait(timeout=30) != 0
        output = server.stderr()
    assert f"error: {key_file} is open to other users (mode 0644)" in output
    assert "Traceback" not in output
