"""In-process wake-ups: a node's long-poll wakes when a task for it is committed, and an
analyst waiting on a round wakes when an answer arrives or the round closes.

This is only a latency shortcut. The database stays the truth: a waiter that is woken (or times
out) reads its state from the database, so a lost or spurious wake-up costs time, never
correctness. On PostgreSQL several aggregator processes may share one database; there
``ClusterNotifier`` passes every wake-up to the other processes with LISTEN/NOTIFY, so a node
polling one process gets a task created on another at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable


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

    def keys_changed(self) -> None:
        """Enrolled node keys changed (join, removal, rotation); other processes reload."""

    async def sent(self) -> None:
        """Return once the wake-ups so far have left this process (nothing to send here)."""

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


CHANNEL = "publieksdata"  # plus a hash of the database URL (one channel per aggregator)
_IDS_PER_MESSAGE = 300  # a NOTIFY payload holds at most 8,000 bytes


class ClusterNotifier(Notifier):
    """Wake-ups across aggregator processes that share one PostgreSQL database (LISTEN/NOTIFY).

    Every wake-up is applied here and also sent on channel ``publieksdata_<hash of the database
    URL>`` (aggregators that share a server but not a database or schema do not hear each
    other); each process listens on one dedicated connection and applies the others' wake-ups
    to its own waiters.
    The database stays the truth (see above): a lost notification only costs latency.
    """

    def __init__(self, conninfo: str) -> None:
        super().__init__()
        import hashlib
        import secrets

        self.conninfo = conninfo
        self.channel = f"{CHANNEL}_{hashlib.sha256(conninfo.encode()).hexdigest()[:12]}"
        self.origin = secrets.token_hex(6)
        self._listener: asyncio.Task[None] | None = None
        self._sender: object | None = None
        self._send_lock = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()
        self.on_keys_changed: Callable[[], Awaitable[None]] | None = None

    async def start(self) -> None:
        import psycopg

        self._sender = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        listen = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        await listen.execute(f"LISTEN {self.channel}")
        self._listener = asyncio.create_task(self._listen(listen), name="cluster-notify")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await asyncio.gather(*self._pending, return_exceptions=True)
        if self._sender is not None:
            await self._sender.close()  # type: ignore[attr-defined]

    async def _listen(self, connection: object) -> None:
        import json

        try:
            async for note in connection.notifies():  # type: ignore[attr-defined]
                try:
                    message = json.loads(note.payload)
                except ValueError:
                    continue
                if message.get("o") == self.origin:
                    continue
                if "n" in message:
                    super().wake_nodes([str(n) for n in message["n"]])
                if "r" in message:
                    await super().round_changed(str(message["r"]))
                if "k" in message and self.on_keys_changed is not None:
                    with contextlib.suppress(Exception):  # the periodic reload catches up
                        await self.on_keys_changed()
        finally:
            await connection.close()  # type: ignore[attr-defined]

    def _publish(self, message: dict[str, object]) -> None:
        import json

        payload = json.dumps({"o": self.origin, **message})

        async def send() -> None:
            if self._sender is None:
                return
            with contextlib.suppress(Exception):  # a lost wake-up costs latency only
                async with self._send_lock:
                    await self._sender.execute(  # type: ignore[attr-defined]
                        "SELECT pg_notify(%s, %s)", (self.channel, payload)
                    )

        task = asyncio.get_running_loop().create_task(send())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def sent(self) -> None:
        """Wait for the notifications queued so far: a caller about to answer (and perhaps be
        stopped right after) knows that the other processes have been told."""
        await asyncio.gather(*self._pending, return_exceptions=True)

    def keys_changed(self) -> None:
        self._publish({"k": 1})

    def wake_nodes(self, node_ids: list[str]) -> None:
        super().wake_nodes(node_ids)
        for i in range(0, len(node_ids), _IDS_PER_MESSAGE):
            self._publish({"n": node_ids[i : i + _IDS_PER_MESSAGE]})

    async def round_changed(self, round_id: str) -> None:
        await super().round_changed(round_id)
        self._publish({"r": round_id})
