"""A node's long-poll: hand it its tasks as soon as there are any, or nothing after its wait.

Woken by the notifier (a task for it was committed, here or in another process), it asks the
rounds for the node's tasks again; the database stays the truth, a wake-up only saves time.
"""

from __future__ import annotations

import asyncio
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aggregator.errors import AggregatorError, ErrorCode
from aggregator.services.notify import Notifier

Pending = Callable[[str, str, Sequence[str]], Awaitable[list[dict[str, Any]]]]


async def long_poll(
    pending_for: Pending,
    notifier: Notifier,
    still_enrolled: Callable[[], bool],
    node_id: str,
    key_id: str,
    in_flight: Sequence[str],
    wait_seconds: float,
    gone: asyncio.Future[None],
) -> list[dict[str, Any]]:
    """The node's signed tasks, or [] once ``wait_seconds`` passed, the client went away
    (``gone``) or the service is stopping. Raises ``unknown_key`` when the node was removed
    while it waited."""
    loop = asyncio.get_running_loop()
    until = loop.time() + wait_seconds
    event = notifier.node_event(node_id)
    while True:
        event.clear()
        if gone.done() or notifier.stopping.is_set():
            return []  # nobody to hand tasks to, or shutting down
        tasks = await pending_for(node_id, key_id, in_flight)
        if tasks:
            return tasks
        remaining = until - loop.time()
        if remaining <= 0:
            return []
        woken: asyncio.Future[Any] = asyncio.ensure_future(event.wait())
        await asyncio.wait({woken, gone}, timeout=remaining, return_when=FIRST_COMPLETED)
        woken.cancel()
        if not still_enrolled():
            raise AggregatorError(ErrorCode.UNKNOWN_KEY)
