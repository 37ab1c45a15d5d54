"""Storage contract: the aggregator behaves the same on SQLite and on PostgreSQL.

Every test runs once per backend (the ``db_url`` fixture); the aggregator gets that database and
the nodes keep their own SQLite files.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from aggregator.storage.db import (
    SchemaOutOfDate,
    current_revision,
    head_revision,
    make_sync_engine,
    require_current_schema,
    upgrade,
)
from aggregator.storage.models import Base
from protocol.messages import JOIN, JoinRequest, RefusalReason
from protocol.results import NodeStatus, RoundState
from protocol.signing import SigningKey, public_key_to_text, sign
from tests.factories import Row
from tests.fedkit import assert_problem, federation, hand_node

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def visits(n: int) -> list[Row]:
    return [Row(person=p, event_date=date(2025, 3, p)) for p in range(1, n + 1)]


def test_migrated_schema_equals_models(db_url: str) -> None:
    with pytest.raises(SchemaOutOfDate, match="has no schema yet"):
        require_current_schema(db_url)
    upgrade(db_url)
    upgrade(db_url)  # a second upgrade is a no-op
    require_current_schema(db_url)
    assert current_revision(db_url) == head_revision()
    engine = make_sync_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
        assert set(Base.metadata.tables) | {"alembic_version"} == set(
            inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()


async def test_a_round_on_each_backend(tmp_path: Path, db_url: str) -> None:
    async with federation(
        tmp_path,
        [visits(3), visits(4), visits(5)],
        agg_db_url=db_url,
        agg_settings={"unsafe_accept_exact_answers": True},
        node_settings={"unsafe_disable_noise": True},
        start_nodes=lambda i: i == 0,  # node 1 refuses by hand, node 2 is down
    ) as fed:
        assert fed.settings.database_url == db_url
        refuser = hand_node(fed, 1)
        spec: dict[str, Any] = {
            "period": {"start": "2025-01-01", "end": "2025-12-31"},
            "group_by": ["artform"],
            "privacy": {"rho": 0.05},
        }
        created = await fed.ask(spec=spec, deadline_seconds=1, quorum=1)
        [task] = await refuser.tasks()
        body = refuser.refusal(task, RefusalReason.BUDGET_EXHAUSTED, "op")
        response = await refuser.post(task["payload"]["task_id"], body)
        assert response.status_code == 200, response.text

        await fed.expire(created.round_id, silent=1)  # node 2 never polls
        result = await fed.wait(created.round_id)
        assert result.state is RoundState.CLOSED
        assert [(n.status, n.reason) for n in result.coverage.nodes] == [
            (NodeStatus.ANSWERED, None),
            (NodeStatus.REFUSED, "budget_exhausted"),
            (NodeStatus.TIMED_OUT, "not_delivered"),
        ]
        visits_estimate = result.measure("visits")
        assert visits_estimate.estimates[result.cells.index(("theatre",))] == 3
        assert result.created_at.tzinfo is not None and result.closed_at is not None
        assert result.created_at < result.deadline == result.closed_at  # protocol time

        rounds = (await fed.client.get("/v1/rounds", headers=fed.as_(fed.analyst))).json()
        assert [(r["round_id"], r["state"]) for r in rounds] == [(created.round_id, "closed")]
        nodes = (await fed.client.get("/v1/nodes", headers=fed.as_(fed.analyst))).json()
        assert len(nodes) == 3
        assert [(n["institution"], n["budget"] is not None) for n in nodes] == [
            ("Instelling 0", True),  # reported with its polls
            ("Instelling 1", True),
            ("Instelling 2", False),  # never connected
        ]
        assert [n["connected"] for n in nodes] == [True, True, False]


async def test_enrolment_lockout_on_each_backend(tmp_path: Path, db_url: str) -> None:
    async with federation(
        tmp_path, [], agg_db_url=db_url, agg_settings={"enrol_max_failures": 2}
    ) as fed:
        key = SigningKey.generate()

        async def enrol(code: str) -> httpx.Response:
            join = JoinRequest(
                invite=code, institution="X", public_key=public_key_to_text(key.public)
            )
            envelope = sign(JOIN, join.model_dump(mode="json"), key)
            return await fed.client.post("/v1/enrol", content=envelope.model_dump_json())

        code = await fed.invite("Schouwburg")
        for _ in range(2):
            assert_problem(await enrol("WRONG-WRONG-WRONG-WRONG"), 403, "invite_invalid")
        locked = await enrol(code)
        assert_problem(locked, 429, "enrol_locked")
        assert 0 < int(locked.headers["retry-after"]) <= 15 * 60 + 1
