"""Files and folders the service creates, owner-only: the database, its -wal/-shm, the logs.

Under the usual umask (022) they would be readable by every local user: password hashes,
sessions, and whatever a log line holds. Files are created 0600 and folders 0700 (a umask
only ever takes bits away); SQLite gives the -wal and -shm files the mode of the database
file. Files and folders that already exist are left as the operator made them.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folder(path: Path) -> None:
    """Create `path` and any missing parents, each 0700; an existing folder is kept as is."""
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:  # another process made it a moment ago
            continue


def private_file(path: Path) -> None:
    """Create the empty file `path` 0600 (and its folder 0700) unless it exists already."""
    private_folder(path.parent)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(descriptor)


def open_private(path: str, flags: int) -> int:
    """An `opener` for open(): a file it creates is 0600 (loguru's log files, rotated too)."""
    return os.open(path, flags, FILE_MODE)
