"""Protocol time: the manual clock moves only when told, and fires its timers in order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from protocol.clock import ManualClock, SystemClock

pytestmark = pytest.mark.anyio
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def settle() -> None:
    """Let callbacks scheduled with call_soon run."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_time_stands_still_until_advanced() -> None:
    clock = ManualClock(START)
    await asyncio.sleep(0.01)
    assert clock.now() == START
    clock.advance(2.5)
    assert clock.now() == START + timedelta(seconds=2.5)
    clock.advance_to(START)  # never back
    assert clock.now() == START + timedelta(seconds=2.5)
    with pytest.raises(ValueError, match="back"):
        clock.advance(-1)


async def test_timers_fire_in_deadline_order_once_time_passes_them() -> None:
    clock = ManualClock(START)
    fired: list[str] = []
    clock.call_at(START + timedelta(seconds=3), lambda: fired.append("c"))
    clock.call_at(START + timedelta(seconds=1), lambda: fired.append("a"))
    cancelled = clock.call_at(START + timedelta(seconds=2), lambda: fired.append("x"))
    clock.call_at(START + timedelta(seconds=2), lambda: fired.append("b"))
    cancelled.cancel()
    clock.advance(0.999)
    await settle()
    assert fired == [] and clock.pending == 3
    clock.advance_to(START + timedelta(seconds=2))
    await settle()
    assert fired == ["a", "b"]
    clock.advance(60)
    await settle()
    assert fired == ["a", "b", "c"] and clock.pending == 0


async def test_a_timer_in_the_past_fires_soon_but_not_inside_call_at() -> None:
    clock = ManualClock(START)
    fired: list[int] = []
    clock.call_at(START - timedelta(seconds=1), lambda: fired.append(1))
    assert fired == []
    await settle()
    assert fired == [1]


async def test_sleep_until_returns_when_the_clock_gets_there() -> None:
    clock = ManualClock(START)
    sleeper = asyncio.ensure_future(clock.sleep_until(START + timedelta(seconds=30)))
    await settle()
    assert not sleeper.done()
    clock.advance(29)
    await settle()
    assert not sleeper.done()
    clock.advance(1)
    await asyncio.wait_for(sleeper, 5)


async def test_a_cancelled_sleep_leaves_no_timer() -> None:
    clock = ManualClock(START)
    sleeper = asyncio.ensure_future(clock.sleep_until(START + timedelta(seconds=30)))
    await settle()
    assert clock.pending == 1
    sleeper.cancel()
    await settle()
    assert clock.pending == 0


async def test_the_system_clock_is_aware_utc_and_its_timers_fire() -> None:
    clock = SystemClock()
    now = clock.now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    await asyncio.wait_for(clock.sleep_until(now), 5)  # already due
    fired = asyncio.Event()
    clock.call_at(clock.now(), fired.set)
    await asyncio.wait_for(fired.wait(), 5)


def test_a_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2025, 1, 1))
