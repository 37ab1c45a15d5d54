"""The publishing API: compose, seal and publish a release from completed rounds (admins).

Reading releases needs no token: the public site (``aggregator.web``) serves them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.deps import AdminDep, StateDep
from aggregator.errors import AggregatorError, ErrorCode
from aggregator.releases import recipe as recipes
from aggregator.releases import store
from aggregator.releases.compose import ComposeError
from aggregator.releases.document import RELEASE_KEYS, Text
from aggregator.releases.publish import PublishError, publish
from protocol.api import ChainEntry, PublishedRelease, PublishRequest, ReleaseChain
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
