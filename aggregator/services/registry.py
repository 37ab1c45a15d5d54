"""The node registry: enrolled nodes, their keys, and what they last reported (signed).

Poll verification needs a node's key on every request, so the active keys are cached in memory
and reloaded from the database on every change this process makes and every ``refresh`` seconds
(for changes made by another replica or by the CLI).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.storage.models import Node, Round, Task
from protocol.api import NodeBudget, NodeInfo
from protocol.messages import NodeReport
from protocol.results import NodeStatus
from protocol.signing import fingerprint, public_key_from_text


@dataclass(frozen=True, slots=True)
class NodeKey:
    node_id: str
    institution: str
    key: Ed25519PublicKey
    retired_until: datetime | None = None  # a previous key, accepted until then


MISS_RELOAD_SECONDS = 1.0


class NodeKeys:
    """The active nodes' public keys by key id; a KeyRing for protocol.signing.Verifier."""

    def __init__(self, factory: async_sessionmaker[AsyncSession], refresh: float = 30.0) -> None:
        self.factory = factory
        self.refresh = refresh
        self._by_key_id: dict[str, NodeKey] = {}
        self._loaded_at = 0.0
        self._reloading = asyncio.Lock()

    async def load(self) -> None:
        async with self.factory() as session:
            rows = await session.scalars(select(Node).where(Node.status == "active"))
            now = datetime.now(UTC)
            keys: dict[str, NodeKey] = {}
            for row in rows:
                keys[row.key_id] = NodeKey(
                    row.id, row.institution, public_key_from_text(row.public_key)
                )
                if (
                    row.retired_key_id is not None
                    and row.retired_public_key is not None
                    and row.retired_until is not None
                    and row.retired_until > now
                ):  # a rotation's overlap window: the old key still signs in-flight answers
                    keys[row.retired_key_id] = NodeKey(
                        row.id,
                        row.institution,
                        public_key_from_text(row.retired_public_key),
                        row.retired_until,
                    )
            self._by_key_id = keys
        self._loaded_at = time.monotonic()

    async def fresh(self, key_id: str | None = None) -> None:
        """Reload when stale, or when ``key_id`` is unknown here (a node that enrolled or
        rotated its key at another aggregator process) and the last load is older than
        ``MISS_RELOAD_SECONDS``; concurrent requests share one reload instead of each doing it."""
        if time.monotonic() - self._loaded_at <= self.refresh and (
            key_id is None or key_id in self._by_key_id
        ):
            return
        async with self._reloading:
            age = time.monotonic() - self._loaded_at
            if age > self.refresh or (
                key_id is not None and key_id not in self._by_key_id and age > MISS_RELOAD_SECONDS
            ):
                await self.load()

    def get(self, key_id: str) -> NodeKey | None:
        return self._by_key_id.get(key_id)

    def public_key(self, key_id: str) -> Ed25519PublicKey | None:
        entry = self._by_key_id.get(key_id)
        return None if entry is None else entry.key


AWAITING_APPROVAL = "awaiting_approval"  # a pending task's reason while its node's operator decides


async def remove_node(session: AsyncSession, node_id: str) -> list[str] | None:
    """Remove a node: its key stops working, its unsettled tasks in open rounds time out (reason
    ``node_removed``), and rounds left with nothing to wait for close. Returns the ids of the
    rounds that changed, or None when there is no such active node."""
    now = datetime.now(UTC)
    result = await session.execute(
        update(Node)
        .where(Node.id == node_id, Node.status == "active")
        .values(status="removed", removed_at=now)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    open_rounds = select(Round.id).where(Round.state == "open")
    changed = list(
        await session.scalars(
            select(Task.round_id).where(
                Task.node_id == node_id,
                Task.status == NodeStatus.PENDING.value,
                Task.round_id.in_(open_rounds),
            )
        )
    )
    if changed:
        await session.execute(
            update(Task)
            .where(Task.node_id == node_id, Task.round_id.in_(changed))
            .where(Task.status == NodeStatus.PENDING.value)
            .values(status=NodeStatus.TIMED_OUT.value, reason="node_removed", phase=None)
        )
        still_waiting = select(Task.round_id).where(
            Task.round_id.in_(changed), Task.status == NodeStatus.PENDING.value
        )
        await session.execute(
            update(Round)
            .where(Round.id.in_(changed), Round.id.not_in(still_waiting))
            .where(Round.mode == "independent")  # a secure round settles at its phase deadline
            .values(state="closed", closed_at=now)
        )
    return changed


async def active_nodes(session: AsyncSession, ids: list[str] | None = None) -> list[Node]:
    query = select(Node).where(Node.status == "active")
    if ids is not None:
        query = query.where(Node.id.in_(ids))
    return list(await session.scalars(query.order_by(Node.joined_at, Node.id)))


async def committed_since_report(session: AsyncSession) -> dict[str, float]:
    """ρ per node in tasks of open rounds that it has not settled yet: spending the node may not
    have reported back. Counting every unsettled task errs on the safe side (a task the node has
    just answered, before its answer arrives, is counted twice for a moment)."""
    rows = await session.execute(
        select(Task.node_id, func.sum(Task.cost_rho))
        .join(Round, Round.id == Task.round_id)
        .where(Task.status == NodeStatus.PENDING.value, Round.state == "open")
        .group_by(Task.node_id)
    )
    return {node_id: float(total) for node_id, total in rows}


def stored_report(node: Node) -> NodeReport | None:
    """The node's last signed report, or None: never reported, or stored by an older version
    that accepted what is refused now (a negative or absurd budget): treated as unknown."""
    if node.report is None:
        return None
    try:
        return NodeReport.model_validate_json(node.report)
    except ValidationError:
        return None


def remaining_estimate(node: Node, pending: dict[str, float]) -> float | None:
    report = stored_report(node)
    if report is None:
        return None
    return max(0.0, report.budget.remaining_rho - pending.get(node.id, 0.0))


CONNECTED_WITHIN = timedelta(minutes=1)


async def node_infos(session: AsyncSession, now: datetime) -> list[NodeInfo]:
    """The active nodes as analysts see them: connection, key and budget estimate."""
    rows = await active_nodes(session)
    pending = await committed_since_report(session)
    infos = []
    for row in rows:
        budget = None
        report = stored_report(row)
        if report is not None and row.report_at is not None:
            reported = report.budget
            budget = NodeBudget(
                period=reported.period,
                cap_rho=reported.cap_rho,
                spent_rho=reported.spent_rho,
                remaining_rho=remaining_estimate(row, pending) or 0.0,
                reported_at=row.report_at,
            )
        infos.append(
            NodeInfo(
                node_id=row.id,
                institution=row.institution,
                status=row.status,
                key_id=row.key_id,
                fingerprint=fingerprint(public_key_from_text(row.public_key)),
                joined_at=row.joined_at,
                last_seen_at=row.last_seen_at,
                connected=row.last_seen_at is not None
                and now - row.last_seen_at < CONNECTED_WITHIN,
                budget=budget,
            )
        )
    return infos
