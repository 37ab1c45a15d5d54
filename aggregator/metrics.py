"""The aggregator's Prometheus metrics (GET /metrics), read from its database at scrape time, so
that two aggregator processes sharing one database report the same figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from aggregator.deps import AggregatorState
from aggregator.storage.models import Node, Release, Round, Task
from protocol.observability import Snapshot

PREFIX = "publieksdata_aggregator"
CONNECTED_WITHIN = timedelta(minutes=1)  # as in GET /v1/nodes


async def snapshot(state: AggregatorState) -> Snapshot:
    snap = Snapshot()
    now = datetime.now(UTC)
    async with state.factory() as session:
        rounds = (
            await session.execute(
                select(Round.mode, Round.state, func.count()).group_by(Round.mode, Round.state)
            )
        ).all()
        tasks = (
            await session.execute(select(Task.status, func.count()).group_by(Task.status))
        ).all()
        nodes = (
            await session.execute(select(Node.status, func.count()).group_by(Node.status))
        ).all()
        connected = await session.scalar(
            select(func.count())
            .select_from(Node)
            .where(Node.status == "active", Node.last_seen_at >= now - CONNECTED_WITHIN)
        )
        releases = await session.scalar(select(func.count()).select_from(Release))
    snap.counter(
        f"{PREFIX}_rounds",
        "Rounds asked, by mode and state (open or closed).",
        {(mode, round_state): float(n) for mode, round_state, n in rounds},
        ("mode", "state"),
    )
    snap.counter(
        f"{PREFIX}_node_tasks",
        "Per-node tasks of all rounds by outcome: answered, refused, timed_out, invalid, pending.",
        {(status,): float(n) for status, n in tasks},
        ("status",),
    )
    snap.gauge(
        f"{PREFIX}_nodes",
        "Enrolled nodes by status.",
        {(s,): float(n) for s, n in nodes},
        ("status",),
    )
    snap.gauge(
        f"{PREFIX}_connected_nodes",
        "Active nodes seen (polling) within the last minute.",
        {(): float(connected or 0)},
    )
    snap.counter(f"{PREFIX}_releases", "Releases published.", {(): float(releases or 0)})
    return snap
