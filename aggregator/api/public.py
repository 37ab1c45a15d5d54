"""The public part of the API: readiness, identity, the catalogue and the report templates."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from aggregator.deps import StateDep
from aggregator.errors import AggregatorError, ErrorCode
from aggregator.storage.db import head_revision
from protocol import catalogue
from protocol.reports import REPORTS
from protocol.signing import fingerprint, public_key_to_text

router = APIRouter(prefix="/v1")


@router.get("/ready", summary="Readiness: the database answers and its schema is current")
async def ready(state: StateDep) -> dict[str, Any]:
    try:
        async with state.factory() as session:
            revision = await session.scalar(text("SELECT version_num FROM alembic_version"))
    except Exception:
        raise AggregatorError(ErrorCode.NOT_READY, "the database does not answer") from None
    if revision != head_revision():
        raise AggregatorError(ErrorCode.NOT_READY, "the database schema is out of date")
    return {"status": "ready"}


@router.get("/health", summary="Liveness and identity of this aggregator")
async def health(state: StateDep) -> dict[str, Any]:
    return {
        "status": "ok",
        "name": state.settings.name,
        "key_id": state.key.key_id,
        "public_key": public_key_to_text(state.key.public),
        "fingerprint": fingerprint(state.key.public),
        "catalogue_version": catalogue.CATALOGUE_VERSION,
    }


@router.get("/catalogue", summary="The public catalogue of dimensions and values")
async def get_catalogue() -> dict[str, object]:
    return catalogue.as_dict()


@router.get("/reports", summary="The standard report templates")
async def reports() -> list[dict[str, Any]]:
    return [template.describe() for template in REPORTS.values()]
