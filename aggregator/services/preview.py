"""Previewing a round: what each node would pay, which would refuse, and how accurate the merged
figures would be. It reads the registry only: no node is asked, no task or round is created and
no budget is spent. The checks are the ones a round gets when it is created (``check_mode``,
``select_nodes``, ``plan`` in aggregator/rounds/create.py, ``precheck`` in admission.py); the
accuracy comes from aggregator/accuracy.py.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.accuracy import STANDARD_SUPPRESSION, predict
from aggregator.errors import AggregatorError
from aggregator.rounds.admission import precheck
from aggregator.rounds.create import check_mode, plan, select_nodes
from aggregator.services import registry
from aggregator.settings import AggregatorSettings
from protocol.noise_shares import query_worst_case_rho
from protocol.preview import MeasurePreview, NodePreview, RoundPreview
from protocol.query import QuerySpec


async def preview(
    settings: AggregatorSettings,
    factory: async_sessionmaker[AsyncSession],
    spec: QuerySpec,
    node_ids: list[str] | None,
    quorum: int | None,
    threshold: int | None,
) -> RoundPreview:
    """The preview of ``POST /v1/rounds`` with this body. Raises the errors that request would
    raise before any node is judged (an unknown node, too few nodes, a bad threshold); nodes
    that would refuse are listed, and the accuracy is that of the round without them."""
    check_mode(spec, threshold)
    async with factory() as session:
        nodes = await select_nodes(session, settings, node_ids)
        pending = await registry.committed_since_report(session)
    t, need = plan(settings, spec, len(nodes), quorum, threshold)
    worst = query_worst_case_rho(spec, t) if t is not None else None
    rows = []
    for node in nodes:
        reason = precheck(spec, node, pending, t)
        rows.append(
            NodePreview(
                node_id=node.id,
                institution=node.institution,
                rho=spec.privacy.rho_charged,
                worst_case_rho=worst,
                refusal=reason,
                reported=registry.stored_report(node) is not None,
            )
        )
    answering = [r for r in rows if r.refusal is None]
    problem = None
    measures: tuple[MeasurePreview, ...] = ()
    if len(answering) < len(rows):
        problem = (
            f"{len(rows) - len(answering)} of {len(rows)} nodes would refuse; leave them out "
            "with 'nodes' or ask for less"
        )
    if answering:
        try:
            # Without the refusing nodes the round is smaller: its threshold may change too.
            t_left, _ = plan(settings, spec, len(answering), quorum, threshold)
        except AggregatorError as exc:
            problem = f"{problem}; without them: {exc}" if problem else str(exc)
        else:
            measures = predict(spec, len(answering), t_left, STANDARD_SUPPRESSION)
    return RoundPreview(
        spec=spec,
        mode=spec.mode,
        threshold=t,
        quorum=need,
        nodes=tuple(rows),
        answering=len(answering),
        measures=measures,
        suppress_relative_halfwidth=STANDARD_SUPPRESSION,
        problem=problem,
    )
