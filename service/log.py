"""loguru sinks (stderr and a rotated file), and escaping of client-supplied text."""

from __future__ import annotations

import contextlib
import itertools
import re
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from service import files
from service.settings import Settings

if TYPE_CHECKING:
    from loguru import Record

_FIELDS = ("status", "request_id", "client")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # the ASCII ones; beyond ASCII, the categories below
# Control, format, line and paragraph separators, and lone surrogates (from bytes that were
# not UTF-8): never written to a log line as they are.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def add_sinks(settings: Settings) -> list[int]:
    """Send log records to stderr and to LOG_FILE; return the sink ids to remove later.

    diagnose and backtrace stay off: loguru would otherwise print the local variables of
    every frame (passwords, tokens) into a logged traceback.
    """
    with contextlib.suppress(ValueError):  # already gone: another app removed it
        logger.remove(0)  # loguru's default stderr sink; ours replace it
    files.private_folder(settings.log_file.parent)
    log_format = "{message}" if settings.log_json else _plain_format
    sinks = [
        logger.add(
            settings.log_file,
            level=settings.log_level,
            format=log_format,
            serialize=settings.log_json,
            diagnose=False,
            backtrace=False,
            rotation=settings.log_rotation_bytes,
            # loguru's own count would take every file its glob `app.*.log` finds for
            # its own: the workers' app.1.log, app.2.log and their rotations too.
            retention=own_rotations(settings.log_file, keep=settings.log_retention),
            encoding="utf-8",
            opener=files.open_private,  # passed on to open(): log files are owner-only
        )
    ]
    if settings.log_stderr:
        sinks.append(
            logger.add(
                sys.stderr,
                level=settings.log_level,
                format=log_format,
                serialize=settings.log_json,
                diagnose=False,
                backtrace=False,
            )
        )
    return sinks


def own_rotations(log_file: Path, *, keep: int) -> Callable[[list[str]], None]:
    """A loguru retention that keeps the `keep` newest rotated files of `log_file` only.

    loguru renames a full `app.log` to `app.<date>.log` (`app.<date>.<n>.log` on a clash)
    and hands retention every file its glob found beside it; only those names are ours.
    """
    own = re.compile(
        re.escape(log_file.stem)
        + r"\.\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}(?:\.\d+)?"
        + re.escape(log_file.suffix)
    )

    def retain(candidates: list[str]) -> None:
        rotated = [Path(path) for path in candidates if own.fullmatch(Path(path).name)]
        newest_first = sorted(rotated, key=lambda path: -path.stat().st_mtime)
        for path in newest_first[keep:]:
            path.unlink(missing_ok=True)

    return retain


def remove_sinks(sink_ids: list[int]) -> None:
    for sink_id in sink_ids:
        logger.remove(sink_id)


def escape(text: str) -> str:
    """Client text made safe for one log line: control and format characters become escapes.

    Control characters (line breaks, ANSI sequences) could forge a line; format characters
    (Unicode category Cf: U+202E RIGHT-TO-LEFT OVERRIDE, the U+2066-2069 isolates, zero-width
    ones) make a line read differently from what it holds. Both become \\xNN or \\uNNNN.
    """
    if text.isascii():
        return _CONTROL.sub(_escaped, text) if _CONTROL.search(text) else text
    return "".join(_escaped_char(char) if _unsafe(char) else char for char in text)


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def _escaped(match: re.Match[str]) -> str:
    return _escaped_char(match.group())


def _escaped_char(char: str) -> str:
    return char.encode("unicode_escape").decode()


def _plain_format(record: Record) -> str:
    # The values stay in `extra` and the template depends only on which fields are
    # present, so loguru parses each of the few templates once instead of once per line.
    return _TEMPLATES[tuple(name in record["extra"] for name in _FIELDS)]


def _template(present: tuple[bool, ...]) -> str:
    fields = " ".join(
        f"{name}={{extra[{name}]}}" for name, on in zip(_FIELDS, present, strict=True) if on
    )
    suffix = f" | {fields}" if fields else ""
    return "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {message}" + suffix + "\n{exception}"


_TEMPLATES = {
    present: _template(present) for present in itertools.product((False, True), repeat=len(_FIELDS))
}
