"""The password hasher's pool: hashes verify, and they run at the lowest CPU priority."""

from __future__ import annotations

import asyncio
import os
import threading

from service.passwords import LOWEST_PRIORITY, PasswordHasher


def own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def test_hashes_run_at_the_lowest_priority_and_the_loop_keeps_its_own() -> None:
    hasher = PasswordHasher(threads=1)
    loop_nice = own_nice()
    try:
        hashed = await hasher.hash("a password")
        assert await hasher.verify("a password", hashed) == (True, None)
        assert (await hasher.verify("wrong", hashed))[0] is False
        pool_nice = await asyncio.get_running_loop().run_in_executor(
            hasher._pool,  # its own threads are what is checked
            own_nice,
        )
    finally:
        hasher.close()
    assert pool_nice == LOWEST_PRIORITY
    assert own_nice() == loop_nice  # the event loop's thread is not lowered with them
