"""SECURITY.md names the test that proves each protection: every one it names must exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine_independent("SECURITY.md")

REPO_ROOT = Path(__file__).resolve().parent.parent
# `tests/file.py`, `tests/file.py::test_name`, or `…::test_name` (same file as the last one)
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`|`…::(\w+)`")


def test_every_test_security_md_names_exists() -> None:
    text = (REPO_ROOT / "SECURITY.md").read_text(encoding="utf-8")
    missing, named, current = [], 0, None
    for match in REFERENCE.finditer(text):
        path, name, same_file_name = match.groups()
        current = path or current
        assert current is not None, "a `…::name` before any file"
        source = REPO_ROOT / current
        if not source.exists():
            missing.append(current)
            continue
        test = name or same_file_name
        if test is not None:
            named += 1
            if not re.search(rf"^(async )?def {test}\(", source.read_text("utf-8"), re.M):
                missing.append(f"{current}::{test}")
    assert named >= 20, "the table of protections is gone or no longer names tests"
    assert missing == [], f"SECURITY.md names tests that do not exist: {missing}"
