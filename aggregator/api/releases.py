"""The publishing API: compose, seal and publish a release from completed rounds (admins).

Reading releases needs no token: the public site (``aggregator.web``) serves them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.api.analysts import spec_from_report
from aggregator.deps import AdminDep, AnalystDep, StateDep
from aggregator.errors import AggregatorError, ErrorCode
from aggregator.releases import plan as plans
from aggregator.releases import recipe as recipes
from aggregator.releases import store
from aggregator.releases.compose import ComposeError
from aggregator.releases.document import RELEASE_KEYS, Text
from aggregator.releases.publish import PublishError, publish
from aggregator.rounds import secure
from aggregator.rounds.result import load_result
from aggregator.services import registry
from aggregator.services.tokens import Role
from aggregator.storage.models import Round
from protocol.api import (
    ChainEntry,
    PublishedRelease,
    PublishRequest,
    ReleaseChain,
    ReleasePlan,
    ReportRequest,
)
from protocol.query import QuerySpec
from protocol.results import RoundState
from protocol.signing import fingerprint, public_key_to_text, sign

router = APIRouter(prefix="/v1", tags=["releases"])


def recipe_of(body: PublishRequest) -> recipes.Recipe:
    try:
        if isinstance(body.recipe, str):
            if not recipes.STANDARD.match(body.recipe):
                raise recipes.RecipeError(
                    f"unknown built-in recipe {body.recipe!r}; built in: {recipes.builtin_names()}"
                )
            recipe = recipes.load(body.recipe)
        else:
            recipe = recipes.parse(body.recipe)
        if body.correction is not None:
            note = Text.model_validate(body.correction)
            recipe = recipe.model_copy(update={"correction_note": note})
    except (recipes.RecipeError, ValidationError) as exc:
        raise AggregatorError(ErrorCode.RECIPE_INVALID, str(exc).splitlines()[0]) from None
    return recipe


@router.post(
    "/releases",
    status_code=201,
    summary="Publish a release: compose it from completed rounds, sign it, append it to the chain",
)
async def create_release(body: PublishRequest, state: StateDep, _: AdminDep) -> PublishedRelease:
    recipe = recipe_of(body)
    now = datetime.now(UTC)

    async def run(session: AsyncSession) -> PublishedRelease:
        sealed = await publish(session, state.key, recipe, body.asked, now)
        document = sealed.document
        return PublishedRelease(
            slug=sealed.slug,
            release_id=document.release_id,
            version=document.version,
            sequence=document.sequence,
            hash=sealed.hash,
            corrects=document.corrects,
            tables=len(document.tables),
            path=f"/nl/releases/{sealed.slug}",
        )

    try:
        return await state.writer.run(run)
    except ComposeError as exc:
        raise AggregatorError(
            ErrorCode.RELEASE_NOT_POSSIBLE, exc.problems[0], problems=exc.problems
        ) from None
    except PublishError as exc:
        raise AggregatorError(ErrorCode.RELEASE_NOT_POSSIBLE, str(exc)) from None


REUSE_CANDIDATES = 500  # the most recent closed rounds searched for one to reuse


async def _candidates(
    session: AsyncSession, mode: str, periods: set[str], now: datetime
) -> list[tuple[str, QuerySpec]]:
    """The most recent closed rounds of ``mode`` asked in this budget period, newest first,
    with their questions: read once for all the reports of a recipe."""
    rows = await session.execute(
        select(Round.id, Round.spec, Round.created_at)
        .where(Round.state == RoundState.CLOSED.value, Round.mode == mode)
        .order_by(Round.created_at.desc(), Round.id)
        .limit(REUSE_CANDIDATES)
    )
    return [
        (str(round_id), QuerySpec.model_validate_json(raw))
        for round_id, raw, created_at in rows
        if plans.within_period(created_at, periods, now)
    ]


async def _reusable(
    session: AsyncSession, spec: QuerySpec, candidates: list[tuple[str, QuerySpec]]
) -> str | None:
    """The newest closed round of the same question with a result, asked in this period."""
    for round_id, asked in candidates:
        if not plans.same_question(spec, asked):
            continue
        result = await load_result(session, round_id)
        if result is not None and result.measures and result.failure is None:
            return round_id
    return None


@router.post(
    "/releases/plan",
    summary="What publishing a recipe would ask and cost each node, and whether it would be "
    "refused; asks nothing",
)
async def plan_release(body: PublishRequest, state: StateDep, who: AnalystDep) -> ReleasePlan:
    recipe = recipe_of(body)
    unknown = sorted(set(body.asked) - set(recipe.reports_to_ask()))
    if unknown:
        raise AggregatorError(
            ErrorCode.RECIPE_INVALID, f"the recipe does not use report {unknown[0]!r}"
        )
    now = state.rounds.clock.now()
    async with state.factory() as session:
        nodes = await registry.active_nodes(session)
        pending = await registry.committed_since_report(session)
        periods = plans.budget_periods(nodes)
        candidates = await _candidates(session, recipe.mode.value, periods, now)
        questions = []
        for name in recipe.reports_to_ask():
            spec = spec_from_report(
                ReportRequest(name=name, year=recipe.year, rho=recipe.rho, mode=recipe.mode)
            )
            given = body.asked.get(name)
            found = None if given else await _reusable(session, spec, candidates)
            questions.append(plans.Question(name, spec, given or found, found is not None))
    least = state.settings.min_quorum
    return plans.plan(
        recipe.release_id,
        questions,
        nodes,
        pending,
        role=who.role.value,
        may_publish=who.may(Role.ADMIN),
        threshold=secure.default_threshold(len(nodes), least) if nodes else None,
    )


@router.get(
    "/releases",
    summary="Every published release in chain order, with the aggregator's public key (no token)",
)
async def list_releases(state: StateDep) -> ReleaseChain:
    async with state.factory() as session:
        rows = await store.chain_index(session)
    keys = [state.key, *state.retired_keys]
    vouched = sign(
        RELEASE_KEYS,
        {"keys": [{"key_id": k.key_id, "public_key": public_key_to_text(k.public)} for k in keys]},
        state.key,
    )
    return ReleaseChain(
        aggregator=state.settings.name,
        key_id=state.key.key_id,
        public_key=public_key_to_text(state.key.public),
        fingerprint=fingerprint(state.key.public),
        keys=vouched.model_dump(mode="json"),
        releases=[
            ChainEntry(
                sequence=sequence,
                slug=slug,
                hash=digest,
                json_path=f"/releases/{slug}.json",
                page_path=f"/nl/releases/{slug}",
            )
            for sequence, slug, digest in rows
        ],
    )
