"""File descriptors: as many as the system allows, and one log line when they run out.

Every connection holds a descriptor. The soft RLIMIT_NOFILE is often 1024 (or lower) while
the hard limit is far higher: `raise_open_file_limit` lifts the soft limit to the hard one
when a serving process starts. When they still run out, new connections are refused:
asyncio's accept fails and it tells the loop's exception handler (many times a second);
libuv (uvloop) accepts and closes them at once and tells nobody. Two signs are therefore
watched: that exception (`log_exhaustion`), and an accepted connection's descriptor number
(`accepted`): the kernel gives the lowest free number, so a connection numbered at the
limit means every descriptor is in use. Either gives one warning per spell of exhaustion,
and a line when connections are accepted again, never one line per connection.
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import time
from typing import Any

from loguru import logger

_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE}


# Descriptors kept free of the limit: libuv holds one spare, and a request may open a file.
_HEADROOM = 2
# A spell is over when a connection is accepted after this long without a sign of it: a
# descriptor freed for a moment (one connection closing) does not end it.
_QUIET_SECONDS = 2.0


class _Spell:
    """Whether connections are being refused now, and the soft limit it is measured by."""

    refusing = False
    limit = 0  # the soft RLIMIT_NOFILE, read when the loop starts serving
    last_sign = 0.0  # time.monotonic() of the latest sign of exhaustion


_spell = _Spell()


def raise_open_file_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # a platform that caps it lower (macOS: OPEN_MAX)
        return soft
    return hard


def log_exhaustion(loop: asyncio.AbstractEventLoop) -> None:
    """Have `loop` log running out of descriptors once per spell; other errors as before."""
    _spell.limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, OSError) and error.errno in _OUT_OF_DESCRIPTORS:
            _refused()
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


def accepted(descriptor: int) -> None:
    """A connection was accepted as `descriptor`: is the table full, or no longer?"""
    if _spell.limit <= 0 or descriptor < 0:
        return
    if descriptor >= _spell.limit - _HEADROOM:
        _refused()
    elif (
        _spell.refusing
        and time.monotonic() - _spell.last_sign >= _QUIET_SECONDS
        and _lowest_free(descriptor) < _spell.limit * 9 // 10
    ):
        _spell.refusing = False
        logger.info("Accepting connections again: file descriptors are free")


def _lowest_free(descriptor: int) -> int:
    """The lowest descriptor free now (the kernel hands it to a dup), or the limit if none.

    Not the accepted connection's own number: asyncio accepts a batch before any of its
    connections is made, so a low number may have been taken while the table filled.
    """
    try:
        probe = os.dup(descriptor)
    except OSError:
        return _spell.limit
    os.close(probe)
    return probe


def _refused() -> None:
    _spell.last_sign = time.monotonic()
    if _spell.refusing:
        return
    _spell.refusing = True
    logger.warning(
        f"Cannot accept connections: out of file descriptors (RLIMIT_NOFILE {_spell.limit}). "
        "Raise `ulimit -n`, or lower KEEPALIVE_TIMEOUT_SECONDS / FIRST_BYTE_TIMEOUT_SECONDS; "
        "logged once until connections are accepted again"
    )
