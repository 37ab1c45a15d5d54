"""In-process wake-ups: a node's long-poll wakes when a task for it is committed, and an
analyst waiting on a round wakes when an answer arrives or the round closes.

This is only a latency shortcut. The database stays the truth: a waiter that is woken (or times
out) reads its state from the database, so a lost or spurious wake-up costs time, never
correctness. With several aggregator replicas, a wake-up reaches the replica that committed; a
node polling another replica sees its task when its poll next reads the database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict


class Notifier:
    def __init__(self) -> None:
        self._nodes: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._rounds: defaultdict[str, asyncio.Condition] = defaultdict(asyncio.Condition)
        self._round_versions: defaultdict[str, int] = defaultdict(int)
        self.stopping = asyncio.Event()

    async def stop(self) -> None:
        """The service is shutting down: wake every long-poll and every waiting analyst now,
        so that they answer (with what there is) instead of being cut off."""
        self.stopping.set()
        for event in self._nodes.values():
            event.set()
        for condition in list(self._rounds.values()):
            async with condition:
                condition.notify_all()

    def node_event(self, node_id: str) -> asyncio.Event:
        return self._nodes[node_id]

    def wake_nodes(self, node_ids: list[str]) -> None:
        for node_id in node_ids:
            self._nodes[node_id].set()

    def forget_node(self, node_id: str) -> None:
        event = self._nodes.pop(node_id, None)
        if event is not None:
            event.set()  # let a hanging poll return and find itself removed

    def round_version(self, round_id: str) -> int:
        return self._round_versions.get(round_id, 0)

    def forget_round(self, round_id: str) -> None:
        """A closed round changes no more: drop its condition (its waiters have been woken; a
        later waiter sees the round closed, or its version changed). The version stays: a few
        bytes per round."""
        self._rounds.pop(round_id, None)

    async def round_changed(self, round_id: str) -> None:
        self._round_versions[round_id] += 1
        condition = self._rounds[round_id]
        async with condition:
            condition.notify_all()

    async def wait_round(self, round_id: str, version: int, timeout: float) -> None:
        """Return once the round's version differs from ``version``, or after ``timeout``."""
        condition = self._rounds[round_id]
        async with condition:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    condition.wait_for(
                        lambda: (
                            self.stopping.is_set()
                            or self._round_versions.get(round_id, 0) != version
                        )
                    ),
                    timeout,
                )
