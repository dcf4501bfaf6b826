"""LOG_ROTATION and LOG_RETENTION: each log file keeps its own rotations, and only those.

`run.py --workers N` writes app.1.log, app.2.log, ... beside app.log. loguru's retention
counted every file its glob `app.*.log` found as app.log's own: app.log's rotations deleted
the workers' files (and only 8 of its own were kept beside two workers' files).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
from loguru import logger

from service import log
from service.settings import Settings, SettingsError
from service.supervisor import worker_log_file
from tests.helpers_process import call, started, wait_until_serving

pytestmark = pytest.mark.engine_independent("the log files")

ROTATION = 10_000  # the smallest LOG_ROTATION allowed
RECORD = "x" * 500  # about 20 records to a file
ROTATED = re.compile(r"\.\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}(?:\.\d+)?\.log")


def write_until_rotated(settings: Settings, rotations: int) -> None:
    """Log through the service's own sinks until `settings.log_file` rotated `rotations` times."""
    sinks = log.add_sinks(settings)
    try:
        for number in range(rotations * (ROTATION // len(RECORD) + 2)):
            logger.info(f"{number} {RECORD}")
    finally:
        log.remove_sinks(sinks)


def rotated_files(folder: Path, stem: str) -> list[Path]:
    """The rotated files of `<stem>.log` in `folder` (not those of another log file)."""
    return sorted(
        path
        for path in folder.iterdir()
        if path.name.startswith(f"{stem}.") and ROTATED.fullmatch(path.name[len(stem) :])
    )


def aged(path: Path, text: str, seconds_ago: int) -> Path:
    """A file as another process left it, older than anything this test writes."""
    path.write_text(text, encoding="utf-8")
    when = path.stat().st_mtime - seconds_ago
    os.utime(path, (when, when))
    return path


@pytest.fixture
def log_settings(tmp_path: Path) -> Settings:
    return Settings(
        log_file=tmp_path / "logs" / "app.log",
        log_stderr=False,
        log_rotation_bytes=ROTATION,
        log_retention=3,
    )


def test_a_log_file_keeps_its_retention_of_rotated_files(log_settings: Settings) -> None:
    write_until_rotated(log_settings, rotations=6)
    folder = log_settings.log_file.parent
    rotated = rotated_files(folder, "app")
    assert len(rotated) == 3, sorted(folder.iterdir())
    assert all(path.stat().st_size <= ROTATION for path in rotated)
    assert log_settings.log_file.exists()


def test_the_main_files_rotations_leave_the_workers_files_alone(log_settings: Settings) -> None:
    folder = log_settings.log_file.parent
    folder.mkdir()
    workers = [worker_log_file(log_settings.log_file, number) for number in (1, 2, 10)]
    others = [aged(path, f"{path.name}\n", seconds_ago=3600) for path in workers]
    others += [
        aged(folder / f"app.1.2026-01-0{day}_00-00-00_000000.log", "old\n", seconds_ago=7200)
        for day in (1, 2)
    ]
    write_until_rotated(log_settings, rotations=5)
    assert len(rotated_files(folder, "app")) == 3
    assert all(path.exists() for path in others), sorted(folder.iterdir())
    assert workers[0].read_text(encoding="utf-8") == "app.1.log\n"


def test_a_workers_rotations_count_only_its_own(log_settings: Settings) -> None:
    folder = log_settings.log_file.parent
    folder.mkdir()
    main = [
        aged(folder / f"app.2026-01-0{day}_00-00-00_000000.log", "main\n", seconds_ago=7200)
        for day in (1, 2)
    ]
    main.append(aged(log_settings.log_file, "main\n", seconds_ago=3600))
    other_worker = aged(folder / "app.2.log", "two\n", seconds_ago=3600)
    own_old = aged(folder / "app.1.2026-01-01_00-00-00_000000.log", "one\n", seconds_ago=7200)
    worker = dataclasses.replace(
        log_settings, log_file=worker_log_file(log_settings.log_file, 1), log_retention=2
    )
    write_until_rotated(worker, rotations=4)
    assert len(rotated_files(folder, "app.1")) == 2
    assert not own_old.exists()  # its own oldest rotation went first
    assert all(path.exists() for path in [*main, other_worker]), sorted(folder.iterdir())


def test_the_settings_are_read_with_their_ranges() -> None:
    defaults = Settings.from_env({})
    assert (defaults.log_rotation_bytes, defaults.log_retention) == (10_000_000, 10)
    for raw, size in [
        ("10 MB", 10_000_000),
        ("500kb", 500_000),
        ("1 GB", 10**9),
        ("20000", 20_000),
    ]:
        assert Settings.from_env({"LOG_ROTATION": raw}).log_rotation_bytes == size
    assert Settings.from_env({"LOG_RETENTION": "1000"}).log_retention == 1000


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("LOG_ROTATION", "9999"),
        ("LOG_ROTATION", "11 GB"),
        ("LOG_ROTATION", "10 TB"),
        ("LOG_ROTATION", "1 day"),
        ("LOG_ROTATION", "-5 MB"),
        ("LOG_RETENTION", "0"),
        ("LOG_RETENTION", "1001"),
        ("LOG_RETENTION", "ten"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}="):
        Settings.from_env({variable: raw})


@pytest.mark.process
@pytest.mark.sqlite_only("the log files are the same on either engine")
def test_run_py_rotates_by_the_settings_and_leaves_the_workers_files_alone(
    tmp_path: Path,
) -> None:
    """A plain run.py beside the files an earlier `run.py --workers 2` left behind."""
    folder = tmp_path / "logs"
    folder.mkdir()
    left_behind = [aged(folder / f"app.{number}.log", "worker\n", 3600) for number in (1, 2)]
    left_behind += [
        aged(folder / f"app.{number}.2026-01-01_00-00-00_000000.log", "old\n", 7200)
        for number in (1, 2)
    ]
    long_id = {"X-Request-ID": "r" * 128}  # about 260 bytes a line: ~40 lines to a file
    requests = 250  # about six files' worth
    with started(tmp_path, LOG_ROTATION="10 KB", LOG_RETENTION="2") as server:
        wait_until_serving(server)
        for _ in range(requests):
            assert call(server, "GET", "/health", headers=long_id)[0] == 200
    kept = [*rotated_files(folder, "app"), folder / "app.log"]
    assert len(kept) == 3, sorted(folder.iterdir())
    lines = sum(path.read_text(encoding="utf-8").count(" выполнялся ") for path in kept)
    assert lines < requests  # the older rotations went
    assert all(path.stat().st_size <= ROTATION for path in kept)
    assert all(path.exists() for path in left_behind), sorted(folder.iterdir())
