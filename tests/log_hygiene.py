"""After the whole suite, no log it produced holds a secret (a pytest plugin, see conftest).

Tests and fixtures `remember()` the secrets they use (passwords, issued tokens and their
signatures, SECRET_KEY values, password hashes); when the session finishes, every log
file under the session's temporary directory (the apps' and servers' `*.log*`, the
servers' captured `stderr-*.txt`) is scanned for them and for what any secret of the kind
looks like (`$argon2`, JWT-shaped strings, `Bearer `, `Authorization`). A find fails the
run, with the file, the line number and what was found (never the secret itself).

Under pytest-xdist each worker remembers its own tests' secrets: the workers hand them to
the controller (`workeroutput`), which scans every worker's logs for all of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

LOG_GLOBS = ("*.log", "*.log.*", "stderr-*.txt")
# Not the service's: chromedriver's own log of what the browser test's Chromium sent. The
# browser holds the user's token by design (Swagger's Authorize), so it is in there.
NOT_SERVICE_LOGS = frozenset({"driver.log"})
PATTERNS = {
    "an argon2 hash": re.compile(r"\$argon2"),
    "a JWT": re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    "a Bearer credential": re.compile(r"Bearer "),
    "an Authorization header": re.compile(r"Authorization", re.IGNORECASE),
}
_MIN_SECRET = 8  # shorter strings would match by chance


@dataclass(frozen=True)
class Leak:
    path: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


_secrets: dict[str, str] = {}  # secret -> what it is
_log_files: set[Path] = set()


def remember(secret: str, what: str) -> str:
    """Record a secret that must never reach a log; returns it, for use inline."""
    if len(secret) >= _MIN_SECRET:
        _secrets.setdefault(secret, what)
    return secret


def remember_token(token: str) -> str:
    """Record an access token and, on its own, its signature."""
    remember(token, "an access token")
    remember(token.rsplit(".", 1)[-1], "an access token's signature")
    return token


def remember_log(path: Path) -> None:
    """A log file outside the session's temporary directory, to be scanned too."""
    _log_files.add(path)


def log_files(root: Path) -> list[Path]:
    found = {
        path
        for pattern in LOG_GLOBS
        for path in root.rglob(pattern)
        if path.name not in NOT_SERVICE_LOGS
    }
    return sorted(path for path in found | _log_files if path.is_file())


def find_leaks(paths: Iterable[Path], secrets: dict[str, str]) -> list[Leak]:
    """Every line of `paths` that holds one of `secrets` or looks like any secret."""
    leaks = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            found = [what for secret, what in secrets.items() if secret in line]
            found += [what for what, pattern in PATTERNS.items() if pattern.search(line)]
            leaks += [Leak(path, number, what) for what in dict.fromkeys(found)]
    return leaks


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput"):  # an xdist worker: the controller scans, once
        config.workeroutput[_WORKER_OUTPUT] = {  # type: ignore[attr-defined]
            "secrets": _secrets,
            "log_files": [str(path) for path in _log_files],
        }
        return
    # The whole session's directory: under xdist, every worker's basetemp is inside it.
    root = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    files = log_files(root)
    leaks = find_leaks(files, _secrets)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"log hygiene: {len(files)} log files scanned for {len(_secrets)} secrets "
            f"and {len(PATTERNS)} patterns: {len(leaks)} leaks"
        )
        for leak in leaks[:50]:
            reporter.write_line(f"LEAK {leak}", red=True)
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """An xdist worker is done: what it remembered joins the controller's scan."""
    found = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT)
    if found is not None:
        for secret, what in found["secrets"].items():
            _secrets.setdefault(secret, what)
        _log_files.update(Path(path) for path in found["log_files"])


_WORKER_OUTPUT = "log_hygiene"
