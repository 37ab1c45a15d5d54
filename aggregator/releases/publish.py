"""Publishing: compose a release from completed rounds, seal it and append it to the chain.

One transaction does it all: read the chain's head and the series' latest version, compose,
sign, insert. If anything fails (a round that is missing, open, failed or without quorum; a
correction without a note; a concurrent publisher taking the same sequence number) the
transaction rolls back and nothing is published.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.releases import store
from aggregator.releases.chain import SealedRelease, UnverifiableRelease, seal
from aggregator.releases.compose import compose
from aggregator.releases.recipe import Recipe
from aggregator.rounds.result import load_result
from protocol.results import RoundResult
from protocol.signing import SigningKey


class PublishError(ValueError):
    """Publishing refused; nothing was written."""


async def round_results(
    session: AsyncSession, recipe: Recipe, asked: Mapping[str, str]
) -> dict[str, RoundResult | None]:
    """table id → its round's result: the recipe's ``round`` or, for a ``report`` table, the
    round asked for that report (``asked``: report name → round id)."""
    results: dict[str, RoundResult | None] = {}
    cache: dict[str, RoundResult | None] = {}
    for table in recipe.tables:
        round_id = table.round if table.round is not None else asked.get(table.report or "")
        if round_id is None:
            results[table.table_id] = None
            continue
        if round_id not in cache:
            cache[round_id] = await load_result(session, round_id)
        results[table.table_id] = cache[round_id]
    return results


async def publish(
    session: AsyncSession,
    key: SigningKey,
    recipe: Recipe,
    asked: Mapping[str, str],
    now: datetime,
) -> SealedRelease:
    """Compose, seal and append (inside the caller's transaction). Raises ComposeError or
    PublishError; the caller's rollback then leaves the chain as it was."""
    results = await round_results(session, recipe, asked)
    latest = await store.latest_of(session, recipe.release_id)
    corrects = None
    if latest is not None:
        if recipe.correction_note is None:
            raise PublishError(
                f"{recipe.release_id} is already published (version {latest.document.version}); "
                "a new version corrects it, so say what changed: give a correction note "
                "(correction_note in the recipe, or --correction-nl and --correction-en)"
            )
        corrects = latest.hash
    head = await store.head(session)
    document = compose(
        recipe,
        results,
        version=1 if latest is None else latest.document.version + 1,
        sequence=1 if head is None else head[0] + 1,
        previous_hash=None if head is None else head[1],
        corrects=corrects,
        published_at=now,
    )
    try:
        sealed = seal(document, key)
    except UnverifiableRelease as exc:
        raise PublishError(str(exc)) from None
    await store.append(session, sealed, now)
    return sealed
