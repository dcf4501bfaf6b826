"""Fixtures: every test gets its own migrated temporary database, log file and app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from service import migrations
from service.app import create_app
from service.db import Database
from service.settings import Settings

# After the session, every log the suite wrote is scanned for the secrets tests remember():
# the hook, imported here, is this conftest's.
from tests.log_hygiene import pytest_sessionfinish, remember

__all__ = ["pytest_sessionfinish"]
pytest_plugins = ["pytester"]  # tests/test_log_hygiene.py runs a suite of its own

TEST_SECRET_KEY = remember("test-secret-key-that-is-long-enough-0123456789", "SECRET_KEY")

ClientFactory = Callable[..., object]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings pointing at this test's own files; nothing is migrated yet."""
    return Settings(
        database_path=tmp_path / "test.db",
        log_file=tmp_path / "logs" / "app.log",
        log_stderr=False,
        secret_key=TEST_SECRET_KEY,
    )


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    """The same settings, with every migration applied to the database."""
    migrations.apply_pending(settings.database_path)
    return settings


@pytest.fixture
async def client(aiohttp_client: ClientFactory, migrated: Settings) -> TestClient:  # type: ignore[type-arg]
    """An in-process HTTP client for a fresh app on a migrated database."""
    return await aiohttp_client(create_app(migrated))  # type: ignore[no-any-return]


@pytest.fixture
async def database(migrated: Settings) -> AsyncIterator[Database]:
    """The Database handle the app would use, opened on the migrated file."""
    db = await Database.open(
        migrated.database_path,
        readers=migrated.database_readers,
        synchronous=migrated.database_synchronous,
    )
    yield db
    await db.close()


def log_lines(settings: Settings) -> list[str]:
    """The lines written so far to the test's log file."""
    if not settings.log_file.exists():
        return []
    return settings.log_file.read_text(encoding="utf-8").splitlines()
