"""`python run.py migrate` (what `make migrate` runs): the database the service would use.

yoyo's own `yoyo apply` reads yoyo.ini (./products.db) and ignores DATABASE_PATH and
DATABASE_URL, prints nothing on success, and is a traceback when the folder of an
absolute sqlite path is missing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.db import migrations
from tests import engines
from tests.helpers_process import REPO_ROOT, database_of, database_untouched, environment

pytestmark = pytest.mark.process


def run_migrate(
    tmp_path: Path, cwd: Path = REPO_ROOT, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "run.py"), "migrate"],
        cwd=cwd,
        env=environment(tmp_path, **env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def shown(database: Path | str) -> str:
    """How the command names the database: its URL."""
    return f"sqlite:///{database}" if isinstance(database, Path) else database


def test_it_migrates_the_database_the_service_would_use_and_says_what_it_applied(
    tmp_path: Path,
) -> None:
    database = database_of(tmp_path)
    known = migrations.known_migration_ids(engines.ENGINE)
    first = run_migrate(tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == (
        f"{shown(database)}: applied {len(known)} migrations: {', '.join(sorted(known))}\n"
    )
    assert migrations.pending_sync(database, known) == []
    again = run_migrate(tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"{shown(database)}: up to date, no migration pending\n"


@pytest.mark.sqlite_only("a folder is a SQLite file's")
@pytest.mark.parametrize("variable", ["DATABASE_PATH", "DATABASE_URL"])
def test_a_missing_folder_is_created_as_run_py_creates_it(tmp_path: Path, variable: str) -> None:
    database = tmp_path / "srv" / "data" / "app.db"
    value = str(database) if variable == "DATABASE_PATH" else f"sqlite:///{database}"
    other = "DATABASE_URL" if variable == "DATABASE_PATH" else "DATABASE_PATH"
    result = run_migrate(tmp_path, **{variable: value, other: ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"sqlite:///{database}: applied ")
    assert (database.parent.stat().st_mode & 0o777, database.stat().st_mode & 0o777) == (
        0o700,
        0o600,
    )
    assert migrations.pending_sync(database, migrations.known_migration_ids()) == []


@pytest.mark.sqlite_only("the default database is a SQLite file")
def test_without_a_setting_it_migrates_the_default_products_db(tmp_path: Path) -> None:
    result = run_migrate(tmp_path, cwd=tmp_path, DATABASE_PATH="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sqlite:///products.db: applied ")
    assert migrations.pending_sync(tmp_path / "products.db", migrations.known_migration_ids()) == []


def test_a_bad_setting_stops_it_naming_the_variable(tmp_path: Path) -> None:
    result = run_migrate(tmp_path, DATABASE_URL="mysql://somewhere/db", DATABASE_PATH="")
    assert result.returncode == 2
    assert result.stderr.startswith("error: DATABASE_URL is not valid"), result.stderr
    assert "Traceback" not in result.stderr
    assert database_untouched(tmp_path)
