"""Deadlines on the injected clock (protocol/clock.py): one timer per open round, for its
deadline (independent) or its current phase's (secure). Timers live in the process that armed
them; after a start they are re-armed from the database, and with several processes on one
database each also sweeps for overdue rounds of the others."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.storage.models import Round
from protocol.clock import Clock, Timer
from protocol.query import Mode
from protocol.results import RoundState

Expire = Callable[[str], Coroutine[Any, Any, None]]


class Due(NamedTuple):
    round_id: str
    at: datetime  # the round's deadline, or its current phase's
    secure: bool


async def open_rounds(factory: async_sessionmaker[AsyncSession]) -> list[Due]:
    """Every open round and when its timer fires."""
    async with factory() as session:
        rows = (
            await session.execute(
                select(Round.id, Round.deadline, Round.phase_deadline, Round.mode).where(
                    Round.state == RoundState.OPEN.value
                )
            )
        ).all()
    return [
        Due(round_id, phase_deadline or deadline, True)
        if mode == Mode.SECURE.value
        else Due(round_id, deadline, False)
        for round_id, deadline, phase_deadline, mode in rows
    ]


class Timers:
    def __init__(self, clock: Clock, spawn: Callable[[Coroutine[Any, Any, None]], None]) -> None:
        self.clock = clock
        self.spawn = spawn
        self._timers: dict[str, Timer] = {}

    def arm(self, round_id: str, at: datetime, expire: Expire) -> None:
        """Call ``expire(round_id)`` at ``at`` (replacing the round's timer, if any)."""
        self.cancel(round_id)
        self._timers[round_id] = self.clock.call_at(at, lambda: self._fire(round_id, expire))

    def _fire(self, round_id: str, expire: Expire) -> None:
        self._timers.pop(round_id, None)
        self.spawn(expire(round_id))

    def cancel(self, round_id: str) -> None:
        timer = self._timers.pop(round_id, None)
        if timer is not None:
            timer.cancel()

    def overdue(self, due: list[Due], grace: timedelta) -> list[Due]:
        now = self.clock.now()
        return [d for d in due if d.at + grace <= now]

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
