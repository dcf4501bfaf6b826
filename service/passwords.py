"""Password hashing with pwdlib's recommended argon2id, off the event loop, bounded.

Each argon2 hash takes 64 MiB and ~0.1 s. The hashes run in a small thread pool of their
own (argon2-cffi releases the GIL), so a login never stalls other requests and a login
storm queues instead of allocating 64 MiB per concurrent attempt. The threads run at a
lower CPU priority than the event loop (nice 10): on a busy machine, requests that need no
hash go first, yet a login still gets a share of the CPU (see HASH_NICENESS).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError

T = TypeVar("T")

# The hash of a random password nobody kept, made with pwdlib's recommended parameters.
# Unknown usernames are verified against it, so that "no such user" costs what a wrong
# password costs. It is no secret: a verify against it never logs anyone in.
DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$gdRs1FjmDFalqRkLU8Q1zg"
    "$Si6/RqWYt3upqn+QD0pZoh0ASvFLJ54uEBfggDzpHX8"
)


class HashObserver(Protocol):
    """What is told of each hash (service.metrics.registry.Metrics); called on its thread."""

    def hash_started(self, waited_seconds: float) -> None: ...

    def hash_finished(self) -> None: ...


class _Unobserved:
    def hash_started(self, waited_seconds: float) -> None:
        pass

    def hash_finished(self) -> None:
        pass


class PasswordHasher:
    """Hash and verify passwords in a bounded pool; unknown users verify against a dummy."""

    def __init__(self, *, threads: int, observer: HashObserver | None = None) -> None:
        self._hash = PasswordHash.recommended()
        self._pool = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="argon2", initializer=_lower_priority
        )
        self._dummy_hash = DUMMY_HASH
        self._observer = observer or _Unobserved()

    async def start(self) -> None:
        """Make a fresh dummy hash only if pwdlib's recommended parameters have changed."""
        if self._hash.current_hasher.check_needs_rehash(self._dummy_hash):
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def hash(self, password: str) -> str:
        return await self._in_pool(self._hash.hash, password)

    async def verify(self, password: str, hashed: str | None) -> tuple[bool, str | None]:
        """(matches, a new hash when the stored one uses stale parameters).

        With `hashed` None (no such user) it verifies against the dummy hash and fails,
        taking the same time as a wrong password.
        """
        if hashed is None:
            await self._in_pool(self._verify_dummy, password)
            return False, None
        return await self._in_pool(self._verify_and_update, password, hashed)

    async def _in_pool(self, work: Callable[..., T], *args: str) -> T:
        """`work(*args)` on a hash thread, its wait for the thread and its run observed."""
        queued = time.perf_counter()

        def observed() -> T:
            self._observer.hash_started(time.perf_counter() - queued)
            try:
                return work(*args)
            finally:
                self._observer.hash_finished()

        return await asyncio.get_running_loop().run_in_executor(self._pool, observed)

    def _verify_dummy(self, password: str) -> None:
        self._hash.verify(password, self._dummy_hash)

    def _verify_and_update(self, password: str, hashed: str) -> tuple[bool, str | None]:
        try:
            return self._hash.verify_and_update(password, hashed)
        except UnknownHashError:  # an empty or foreign stored hash never matches
            return False, None


# The hash threads' nice value. Linux shares a busy CPU by weight: 1024 at nice 0, 110 at
# nice 10, 15 at nice 19. At 19 a hash competing with one busy nice-0 thread (our own event
# loop under load, or any other process) got ~1.4% of the core, so a 0.1 s hash took
# seconds and logins starved. At 10 it gets ~10%: the event loop still keeps ~90%, and a
# login under full load takes about a second (bench/README.md has the measurement).
HASH_NICENESS = 10


def _lower_priority() -> None:
    """Lower the calling thread's priority (Linux: a thread's nice value is its own)."""
    with contextlib.suppress(AttributeError, OSError):  # no per-thread nice here: run as is
        thread = threading.get_native_id()
        # Never raise it: a service started under `nice -n 15` keeps 15 for its hashes too.
        niceness = max(HASH_NICENESS, os.getpriority(os.PRIO_PROCESS, thread))
        os.setpriority(os.PRIO_PROCESS, thread, niceness)
