"""Protocol time: what "now" is and when a deadline fires, behind one small interface.

Everything that enforces a protocol deadline (a round's deadline, a secure round's phase
deadlines, a node's task deadline and its operator's approval window) asks a ``Clock`` instead of
the system: ``now()`` for an aware UTC datetime, ``call_at()`` for a timer at a deadline, and
``sleep_until()`` to wait for one. Services run on ``SystemClock``; tests run on a
``ManualClock``, whose time moves only when the test calls ``advance()``, so that no test depends
on how fast the machine is. Signature freshness (message age, replay windows) stays on real time:
it protects the wire, it is not a deadline of the protocol.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Timer(Protocol):
    """A pending ``call_at``; cancelling a timer that fired already does nothing."""

    def cancel(self) -> None: ...


class Clock(ABC):
    @abstractmethod
    def now(self) -> datetime:
        """The current time, timezone-aware in UTC."""

    @abstractmethod
    def call_at(self, when: datetime, callback: Callable[[], None]) -> Timer:
        """Call ``callback`` on the running event loop once the time is ``when`` or later."""

    async def sleep_until(self, when: datetime) -> None:
        """Return once the time is ``when`` or later."""
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        timer = self.call_at(when, wake)
        try:
            await woken
        finally:
            timer.cancel()


class SystemClock(Clock):
    """Real time: the system clock and the event loop's timers."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def call_at(self, when: datetime, callback: Callable[[], None]) -> Timer:
        delay = max(0.0, (when - self.now()).total_seconds())
        return asyncio.get_running_loop().call_later(delay, callback)


@dataclass(order=True)
class _Due:
    when: datetime
    seq: int
    callback: Callable[[], None] = field(compare=False)
    loop: asyncio.AbstractEventLoop = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock(Clock):
    """Time that stands still until ``advance()`` moves it; timers fire as it passes them.

    It starts at the real time (so that timestamps look ordinary next to signature times) unless
    given a start. Callbacks run on the event loop that asked for them, in deadline order.
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(UTC)
        if start.tzinfo is None:
            raise ValueError("a clock's time is timezone-aware")
        self._now = start.astimezone(UTC)
        self._due: list[_Due] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    def call_at(self, when: datetime, callback: Callable[[], None]) -> Timer:
        due = _Due(when, next(self._seq), callback, asyncio.get_running_loop())
        if when <= self._now:
            due.loop.call_soon(self._fire, due)
        else:
            heapq.heappush(self._due, due)
        return due

    def advance(self, by: timedelta | float) -> None:
        """Move time forward by ``by`` (seconds or a timedelta), firing the timers passed."""
        step = by if isinstance(by, timedelta) else timedelta(seconds=by)
        if step < timedelta(0):
            raise ValueError("time does not go back")
        self.advance_to(self._now + step)

    def advance_to(self, when: datetime) -> None:
        """Move time forward to ``when`` (never back), firing the timers passed."""
        if when > self._now:
            self._now = when
        while self._due and self._due[0].when <= self._now:
            due = heapq.heappop(self._due)
            due.loop.call_soon_threadsafe(self._fire, due)

    @property
    def pending(self) -> int:
        """How many timers wait for a later time."""
        return sum(not d.cancelled for d in self._due)

    @staticmethod
    def _fire(due: _Due) -> None:
        if not due.cancelled:
            due.cancelled = True  # once
            due.callback()
