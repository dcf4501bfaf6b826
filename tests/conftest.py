"""Fixtures: every test gets its own migrated temporary database, log file and app."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.db import Database, migrations, open_database
from service.db.dialect import Dialect
from service.settings import Settings
from tests import engines, log_hygiene
from tests.log_hygiene import remember

pytest_plugins = ["pytester"]  # tests/test_log_hygiene.py runs suites of its own

TEST_SECRET_KEY = remember("test-secret-key-that-is-long-enough-0123456789", "SECRET_KEY")

ClientFactory = Callable[..., object]


def pytest_configure(config: pytest.Config) -> None:
    # After the session, every log the suite wrote is scanned for the secrets tests
    # remember(). (Registered, not listed in pytest_plugins: this module imported it.)
    config.pluginmanager.register(log_hygiene, "log_hygiene")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the other engine's own tests, and, without a server, those that need one.

    sqlite_only and engine_independent tests run only in `make test` (the latter would
    run the same again), postgresql_only ones only in `make test-postgresql`.
    needs_postgresql tests (copying between the engines, the
    README's PostgreSQL commands) run in `make test` when the server answers; when it does
    not they are left out and said so, unless REQUIRE_POSTGRES is set (CI), which fails.
    """
    others = (
        ("sqlite_only", "engine_independent") if engines.is_postgres() else ("postgresql_only",)
    )
    left_out = [item for item in items if any(item.get_closest_marker(m) for m in others)]
    if not engines.is_postgres() and not os.environ.get("REQUIRE_POSTGRES"):
        unreachable = engines.server_problem()
        if unreachable is not None:
            _NO_SERVER.append(unreachable)
            left_out += [i for i in items if i.get_closest_marker("needs_postgresql") is not None]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]
    _LEFT_OUT.update(item.nodeid for item in left_out)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _LEFT_OUT:
        half = "make test" if engines.is_postgres() else "make test-postgresql"
        terminalreporter.write_line(
            f"engine {engines.ENGINE}: {len(_LEFT_OUT)} tests left out: the other engine's"
            + (" and those independent of the engine" if engines.is_postgres() else "")
            + f" (they run in `{half}`)"
            + (f", and those that need a PostgreSQL server ({_NO_SERVER[0]})" if _NO_SERVER else "")
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller reports
        session.config.workeroutput[_WORKER_OUTPUT] = {  # type: ignore[attr-defined]
            "left_out": sorted(_LEFT_OUT),
            "no_server": _NO_SERVER[:1],
        }


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """Under xdist the workers collect: each one's tests left out are the controller's too."""
    found = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT)
    if found is not None:
        _LEFT_OUT.update(found["left_out"])
        if found["no_server"] and not _NO_SERVER:
            _NO_SERVER.extend(found["no_server"])


_WORKER_OUTPUT = "left_out"
_NO_SERVER: list[str] = []
_LEFT_OUT: set[str] = set()


@pytest.fixture(autouse=True)
def engine() -> Iterator[Dialect]:
    """The engine this run tests (TEST_ENGINE); the test's PostgreSQL databases go after it."""
    try:
        yield engines.ENGINE
    finally:
        if engines.is_postgres():
            engines.drop_test_databases()


@pytest.fixture(scope="session", autouse=True)
def _postgres_session_databases() -> Iterator[None]:
    yield
    if engines.is_postgres():
        engines.drop_session_databases()


@pytest.fixture
def settings(tmp_path: Path, engine: Dialect, request: pytest.FixtureRequest) -> Settings:
    """Settings pointing at this test's own files and database; nothing is migrated yet,
    unless the test asks for `migrated` (PostgreSQL: then it is handed out migrated)."""
    postgres_url = None
    if engines.is_postgres():
        postgres_url = engines.database_for(tmp_path, migrated=_wants_migrated(request))
    return Settings(
        database_path=tmp_path / "test.db",
        postgres_url=postgres_url,
        log_file=tmp_path / "logs" / "app.log",
        log_stderr=False,
        secret_key=TEST_SECRET_KEY,
        mail_url=f"file:{tmp_path / 'mail'}",  # never into the checkout's ./mail
    )


@pytest.fixture
def migrated(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The same settings, with every migration applied to the database.

    Either engine copies a database migrated once per session (per xdist worker): running
    yoyo for every test cost more than most tests themselves.
    """
    if settings.postgres_url is not None:
        engines.migrate(settings.postgres_url)
    else:
        shutil.copyfile(request.getfixturevalue("sqlite_template"), settings.database_path)
    return settings


def _wants_migrated(request: pytest.FixtureRequest) -> bool:
    """The test uses the `migrated` fixture (not a parameter of that name)."""
    callspec = getattr(request.node, "callspec", None)
    parameters = callspec.params if callspec is not None else {}
    return "migrated" in request.fixturenames and "migrated" not in parameters


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database with every migration applied, for `migrated` to copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrations.apply_pending(path)
    # yoyo has closed its connection: the file alone holds the database (no -wal beside it).
    assert not path.with_name(path.name + "-wal").exists()
    return path


@pytest.fixture
async def client(aiohttp_client: ClientFactory, migrated: Settings) -> TestClient:  # type: ignore[type-arg]
    """An in-process HTTP client for a fresh app on a migrated database."""
    return await aiohttp_client(create_app(migrated))  # type: ignore[no-any-return]


@pytest.fixture
async def database(migrated: Settings) -> AsyncIterator[Database]:
    """The Database handle the app would use, opened on the migrated database."""
    db = await open_database(migrated)
    yield db
    await db.close()


def log_lines(settings: Settings) -> list[str]:
    """The lines written so far to the test's log file."""
    if not settings.log_file.exists():
        return []
    return settings.log_file.read_text(encoding="utf-8").splitlines()
