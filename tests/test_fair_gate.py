"""The gate in front of each engine's connections admits waiters strictly in order.

Both engines hand out connections through asyncio.Semaphore and rely on it being FIFO and
surviving cancels (CPython 3.11+); a newcomer that overtakes a waiter is what made p99 ×8
at 64 connections with asyncpg's own queue (bench/README.md). These tests fail if a Python
version the project supports breaks that.
"""

from __future__ import annotations

import asyncio

import pytest

FairGate = asyncio.Semaphore  # what service/db/sqlite.py and postgres.py use


async def test_at_most_the_permits_hold_it_at_once() -> None:
    gate, holding, most = FairGate(3), 0, 0

    async def hold() -> None:
        nonlocal holding, most
        await gate.acquire()
        holding += 1
        most = max(most, holding)
        await asyncio.sleep(0.001)
        holding -= 1
        gate.release()

    await asyncio.gather(*(hold() for _ in range(50)))
    assert most == 3


async def test_a_newcomer_never_overtakes_a_waiter() -> None:
    """What asyncio.Queue gets wrong: a release, then a newcomer before the waiter has run."""
    gate, order = FairGate(1), []
    await gate.acquire()

    async def waiter(name: str) -> None:
        await gate.acquire()
        order.append(name)
        gate.release()

    first = asyncio.create_task(waiter("first"))
    await asyncio.sleep(0)  # first is now queued
    gate.release()
    newcomer = asyncio.create_task(waiter("newcomer"))  # arrives before first has run
    await asyncio.gather(first, newcomer)
    assert order == ["first", "newcomer"]


async def test_a_cancelled_waiter_leaves_its_place_and_loses_no_permit() -> None:
    gate = FairGate(1)
    await gate.acquire()
    cancelled = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    gate.release()
    await asyncio.wait_for(gate.acquire(), 1)  # the permit came back, not to the cancelled one


async def test_a_waiter_cancelled_just_after_its_turn_passes_the_permit_on() -> None:
    gate = FairGate(1)
    await gate.acquire()
    unlucky = asyncio.create_task(gate.acquire())
    next_in_line = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    gate.release()  # the permit goes to `unlucky`...
    unlucky.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await unlucky
    await asyncio.wait_for(next_in_line, 1)


async def test_a_waiter_cancelled_then_passed_over_by_a_release_still_raises_cancelled() -> None:
    """Cancel a waiter, then release before it wakes: release() skips it (it is done), and the
    waiter must still end with CancelledError (a deadline's 408), never another error."""
    gate = FairGate(1)
    await gate.acquire()
    waiting = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    gate.release()  # pops the cancelled waiter, finds it done, frees the permit
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.wait_for(gate.acquire(), 1)
