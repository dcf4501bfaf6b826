"""The password hasher's pool: hashes verify, and they run at a lower CPU priority."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

from service.passwords import HASH_NICENESS, PasswordHasher


def own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def test_hashes_run_at_nice_10_and_the_loop_keeps_its_own() -> None:
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
    # Below the loop, but not the lowest (19): that starved logins on a busy machine.
    assert pool_nice == HASH_NICENESS == 10
    assert own_nice() == loop_nice  # the event loop's thread is not lowered with them


def test_a_process_already_nicer_than_10_keeps_its_own_niceness_for_hashes() -> None:
    # In a child process, so that this test's own priority is left alone.
    script = (
        "import asyncio, os, threading\n"
        "from service.passwords import PasswordHasher\n"
        "os.nice(15 - os.nice(0))\n"
        "hasher = PasswordHasher(threads=1)\n"
        "own = lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())\n"
        "print(hasher._pool.submit(own).result())\n"
        "hasher.close()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == "15", result.stderr
