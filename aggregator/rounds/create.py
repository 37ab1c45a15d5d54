"""Creating a round: check the request, choose the nodes, admit them, and store the round with
one task per node in one transaction. The caller arms its timer and wakes the nodes."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.errors import AggregatorError, ErrorCode
from aggregator.rounds import secure
from aggregator.rounds.admission import admit
from aggregator.services import registry
from aggregator.services.writer import Writer
from aggregator.settings import AggregatorSettings
from aggregator.storage.models import Node, Round, Task
from protocol import secagg
from protocol.messages import Phase
from protocol.query import Mechanism, Mode, QuerySpec
from protocol.results import NodeStatus, RoundState


def check_mode(spec: QuerySpec, threshold: int | None) -> None:
    """Refuse a mode the spec cannot have: secure needs ρ (zCDP); a threshold needs secure."""
    if spec.mode is Mode.SECURE and spec.privacy.mechanism is not Mechanism.GAUSSIAN:
        raise AggregatorError(
            ErrorCode.INVALID_QUERY, "secure mode needs a rho (zCDP) budget, not epsilon"
        )
    if threshold is not None and spec.mode is not Mode.SECURE:
        raise AggregatorError(
            ErrorCode.INVALID_REQUEST, "a threshold is for secure rounds; use quorum"
        )


async def select_nodes(
    session: AsyncSession, settings: AggregatorSettings, node_ids: list[str] | None
) -> list[Node]:
    """The active nodes a round asks (all, or those named), or why there cannot be a round."""
    nodes = await registry.active_nodes(session, node_ids)
    if node_ids is not None:
        missing = sorted(set(node_ids) - {n.id for n in nodes})
        if missing:
            raise AggregatorError(ErrorCode.UNKNOWN_NODE, f"not enrolled: {', '.join(missing)}")
    if not nodes:
        raise AggregatorError(ErrorCode.NO_NODES)
    if len(nodes) > settings.max_nodes_per_round:
        raise AggregatorError(ErrorCode.INVALID_REQUEST, "too many nodes for one round")
    return nodes


def plan(
    settings: AggregatorSettings,
    spec: QuerySpec,
    count: int,
    quorum: int | None,
    threshold: int | None,
) -> tuple[int | None, int]:
    """A round of ``spec`` over ``count`` nodes: its secure threshold t (None in independent
    mode) and its quorum, or why the request cannot be a round."""
    secure_mode = spec.mode is Mode.SECURE
    least = settings.min_quorum
    if count < least:
        raise AggregatorError(
            ErrorCode.INVALID_REQUEST,
            f"a round needs at least {least} institutions, so that no result shows one "
            "institution's figure",
        )
    t: int | None = None
    if secure_mode and count < 2:
        raise AggregatorError(
            ErrorCode.INVALID_REQUEST,
            "secure mode needs at least 2 nodes; ask more nodes or use mode 'independent'",
        )
    if secure_mode:
        t = threshold or quorum or secure.default_threshold(count, least)
        low = max(least, secagg.minimum_threshold(count), 2)
        if not low <= t <= count:
            raise AggregatorError(
                ErrorCode.INVALID_REQUEST,
                f"the threshold must be between {low} and {count} for {count} nodes",
            )
        if quorum is not None and quorum != t:
            raise AggregatorError(
                ErrorCode.INVALID_REQUEST,
                "a secure round's quorum is its threshold; give one of the two",
            )
        need = t
    else:
        need = quorum if quorum is not None else max(least, math.ceil(count / 2))
    if not least <= need <= count:
        raise AggregatorError(
            ErrorCode.INVALID_REQUEST, f"quorum must be between {least} and {count}"
        )
    return t, need


@dataclass(frozen=True, slots=True)
class Window:
    """When a round ends, and (secure) when its first phase, ANNOUNCE, ends."""

    deadline: datetime
    phase_end: datetime | None

    @property
    def first_timer(self) -> datetime:
        return self.phase_end or self.deadline


def window(
    settings: AggregatorSettings,
    spec: QuerySpec,
    now: datetime,
    deadline_seconds: int | None,
    approval_deadline_seconds: int | None,
) -> Window:
    secure_mode = spec.mode is Mode.SECURE
    seconds = deadline_seconds or settings.default_deadline_seconds
    longest = settings.max_deadline_seconds
    if not 1 <= seconds <= longest:
        raise AggregatorError(
            ErrorCode.INVALID_REQUEST, f"deadline_seconds must be between 1 and {longest}"
        )
    if approval_deadline_seconds is not None and not secure_mode:
        raise AggregatorError(
            ErrorCode.INVALID_REQUEST,
            "approval_deadline_seconds is for secure rounds; an independent round's "
            "deadline_seconds is its nodes' approval window",
        )
    approval = approval_deadline_seconds or seconds
    if not 1 <= approval <= longest:
        raise AggregatorError(
            ErrorCode.INVALID_REQUEST,
            f"approval_deadline_seconds must be between 1 and {longest}",
        )
    if not secure_mode:
        return Window(now + timedelta(seconds=seconds), None)
    # ANNOUNCE waits for the operators' approval on its own deadline; the protocol phases get
    # the round's deadline_seconds after it (or more, when all accept early).
    phase_end = secure.announce_deadline(now, approval)
    return Window(phase_end + timedelta(seconds=seconds), phase_end)


@dataclass(frozen=True, slots=True)
class Created:
    round_id: str
    spec: QuerySpec
    window: Window
    tasks: dict[str, str]  # node id -> task id
    row: Round  # as stored (transient: not bound to a session)
    institutions: dict[str, str]  # node id -> institution


async def create(
    settings: AggregatorSettings,
    writer: Writer,
    now: datetime,
    spec: QuerySpec,
    analyst: str,
    node_ids: list[str] | None,
    times: tuple[int | None, int | None],
    quorum: int | None,
    threshold: int | None,
) -> Created:
    """Store a new round of ``spec`` and its tasks; ``times`` are the deadline and approval
    seconds of the request."""
    check_mode(spec, threshold)
    when = window(settings, spec, now, *times)
    secure_mode = spec.mode is Mode.SECURE
    round_id = str(uuid.uuid4())
    spec = spec.model_copy(update={"query_id": f"pd-{round_id}"})
    first = Phase.ANNOUNCE if secure_mode else Phase.QUERY

    async def store(session: AsyncSession) -> Created:
        nodes = await select_nodes(session, settings, node_ids)
        t, need = plan(settings, spec, len(nodes), quorum, threshold)
        admit(spec, nodes, await registry.committed_since_report(session), t)
        values = dict(
            id=round_id,
            query_id=spec.query_id,
            query_hash=spec.digest(),
            spec=spec.model_dump_json(),
            analyst=analyst,
            created_at=now,
            deadline=when.deadline,
            quorum=need,
            state=RoundState.OPEN.value,
            mode=spec.mode.value,
            threshold=t,
            phase=Phase.ANNOUNCE.value if secure_mode else None,
            phase_deadline=when.phase_end,
        )
        await session.execute(insert(Round).values(values))
        tasks = {n.id: str(uuid.uuid4()) for n in nodes}
        await session.execute(
            insert(Task),
            [
                {
                    "id": task_id,
                    "round_id": round_id,
                    "node_id": node_id,
                    "status": NodeStatus.PENDING.value,
                    "cost_rho": spec.privacy.rho_charged,
                    "created_at": now,
                    "phase": first.value,
                }
                for node_id, task_id in tasks.items()
            ],
        )
        institutions = {n.id: n.institution for n in nodes}
        return Created(round_id, spec, when, tasks, Round(**values), institutions)

    return await writer.run(store)
