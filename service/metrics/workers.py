"""The folder the workers of `run.py --workers` write their metrics to (the master's side).

prometheus-client's multiprocess mode needs a folder (PROMETHEUS_MULTIPROC_DIR) that no
earlier run wrote to: its files would be merged into this run's counts. Each master makes
a new one, named after its pid, and removes it when it stops; a folder whose master no
longer runs (killed before it could remove it) is removed at the next start. A folder
whose master runs (another `run.py --workers` on this host) is left alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from prometheus_client import multiprocess

PREFIX = "products-metrics-"


def fresh_folder() -> Path:
    """A new private (0700) folder for this master's workers; stale ones removed first."""
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        pid = folder.name.removeprefix(PREFIX).partition("-")[0]
        if pid.isdigit() and not _running(int(pid)) and _ours(folder):
            shutil.rmtree(folder, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))


def worker_exited(pid: int, folder: Path) -> None:
    """Drop a dead worker's live gauges (in flight now); its counters stay in the totals."""
    multiprocess.mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _ours(folder: Path) -> bool:
    info = folder.lstat()
    return folder.is_dir() and not folder.is_symlink() and info.st_uid == os.getuid()
