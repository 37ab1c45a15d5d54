"""The analysts' part of the API (token): nodes and their budgets, rounds."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from aggregator.deps import AnalystDep, StateDep
from aggregator.errors import AggregatorError, ErrorCode
from aggregator.services import preview, registry
from protocol.api import NodeInfo, ReportRequest, RoundRequest, RoundSummary
from protocol.preview import RoundPreview
from protocol.query import Period, QuerySpec
from protocol.reports import REPORTS, report, year_period
from protocol.results import RoundResult

router = APIRouter(prefix="/v1")


@router.get("/nodes", summary="Enrolled nodes, their connection and budget")
async def nodes(state: StateDep, _: AnalystDep) -> list[NodeInfo]:
    async with state.factory() as session:
        return await registry.node_infos(session, datetime.now(UTC))


def spec_from_report(request: ReportRequest) -> QuerySpec:
    if request.name not in REPORTS:
        raise AggregatorError(
            ErrorCode.INVALID_QUERY, f"unknown report; choose one of: {', '.join(REPORTS)}"
        )
    if request.year is not None and (request.start or request.end):
        raise AggregatorError(ErrorCode.INVALID_QUERY, "give a year or start and end, not both")
    try:
        if request.start is not None and request.end is not None:
            period = Period(start=request.start, end=request.end)
        elif request.start is None and request.end is None:
            period = year_period(request.year or date.today().year - 1)
        else:
            raise ValueError("give both start and end")
        return report(request.name).build(
            period=period,
            rho=request.rho,
            epsilon=request.epsilon,
            codes=request.codes,
            mode=request.mode,
        )
    except ValueError as exc:
        raise AggregatorError(ErrorCode.INVALID_QUERY, str(exc).splitlines()[0]) from None


def _spec(body: RoundRequest) -> QuerySpec:
    return body.spec if body.spec is not None else spec_from_report(body.report)  # type: ignore[arg-type]


@router.post("/rounds", status_code=201, summary="Ask the federation a question")
async def create_round(body: RoundRequest, state: StateDep, who: AnalystDep) -> RoundResult:
    return await state.rounds.start(
        _spec(body),
        who.name,
        list(body.nodes) if body.nodes is not None else None,
        body.deadline_seconds,
        body.quorum,
        threshold=body.threshold,
        approval_deadline_seconds=body.approval_deadline_seconds,
    )


@router.post(
    "/rounds/preview",
    summary="What a round would cost and how accurate it would be; nothing is asked or spent",
)
async def preview_round(body: RoundRequest, state: StateDep, _: AnalystDep) -> RoundPreview:
    return await preview.preview(
        state.settings,
        state.factory,
        _spec(body),
        list(body.nodes) if body.nodes is not None else None,
        body.quorum,
        body.threshold,
    )


@router.get("/rounds", summary="Recent rounds, newest first")
async def list_rounds(state: StateDep, _: AnalystDep) -> list[RoundSummary]:
    return [
        RoundSummary(
            round_id=row.id,
            title=QuerySpec.model_validate_json(row.spec).title,
            analyst=row.analyst,
            state=row.state,
            created_at=row.created_at,
            deadline=row.deadline,
            closed_at=row.closed_at,
        )
        for row in await state.rounds.recent()
    ]


@router.get(
    "/rounds/{round_id}",
    summary="A round's coverage and, once closed, its merged result",
    description=(
        "With wait > 0 the response is held until more than 'seen' nodes have settled, the "
        "round closes, or wait seconds pass."
    ),
)
async def get_round(
    round_id: str,
    state: StateDep,
    _: AnalystDep,
    wait: Annotated[float, Query(ge=0, le=60)] = 0,
    seen: Annotated[int, Query(ge=-1, le=1_000_000)] = -1,
) -> RoundResult:
    if len(round_id) > 80:
        raise AggregatorError(ErrorCode.ROUND_NOT_FOUND)
    return await state.rounds.wait(round_id, seen, wait)
