"""A node restored from a backup made before it answered cannot spend that budget again: the
aggregator sends back the node's own signed message with its highest spend, the node raises its
ledger to it before it takes any task, and a proof the node did not sign is ignored."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from node.app import create_app
from node.cli import app as node_cli
from node.services import audit, ledger
from node.settings import NodeSettings
from node.storage.db import make_engine, make_sessionmaker
from node.storage.models import AuditEvent
from protocol.messages import POLL, BudgetStatus, Poll
from protocol.signing import SigningKey, sign
from tests.factories import Row
from tests.fedkit import answered_round, federation, node_report

pytestmark = pytest.mark.anyio
runner = CliRunner()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def spent(node: NodeSettings, period: str) -> float:
    engine = make_engine(node.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            return ledger.spent_units(session, period) / ledger.UNITS_PER_RHO
    finally:
        engine.dispose()


async def test_a_restored_node_gets_its_spend_back_before_answering(tmp_path: Path) -> None:
    rows = [[Row(person=p, event_date=date(2025, 3, p)) for p in range(1, 9)]]
    async with federation(
        tmp_path, rows, start_nodes=lambda _i: False, node_settings={"poll_wait_seconds": 0.5}
    ) as fed:
        node, app = fed.nodes[0], fed.node_apps[0]
        backup = tmp_path / "backup"
        made = runner.invoke(node_cli, ["backup", "--home", str(node.home), "--out", str(backup)])
        assert made.exit_code == 0, made.output
        async with app.router.lifespan_context(app):
            period = app.state.node.answerer.budget_period()
            await answered_round(fed)
        assert spent(node, period) == pytest.approx(0.05)

        restored = runner.invoke(
            node_cli, ["restore", "--home", str(node.home), "--from", str(backup)]
        )
        assert restored.exit_code == 0, restored.output
        assert spent(node, period) == 0.0 and node.budget_sync_path.exists()

        again = create_app(
            NodeSettings.load(node.home), aggregator_client=fed.client, clock=fed.clock
        )
        async with again.router.lifespan_context(again):
            for _ in range(100):
                if not node.budget_sync_path.exists():
                    break
                await asyncio.sleep(0.1)
            assert not node.budget_sync_path.exists()
            assert spent(node, period) == pytest.approx(0.05)
            await answered_round(fed)
        assert spent(node, period) == pytest.approx(0.10)
        engine = make_engine(node.database_url)
        try:
            with engine.connect() as conn:
                kinds = list(conn.scalars(select(AuditEvent.kind).order_by(AuditEvent.seq)))
        finally:
            engine.dispose()
        assert audit.BACKUP_RESTORED in kinds and audit.BUDGET_RESTORED in kinds
        assert kinds.index(audit.BUDGET_RESTORED) < len(kinds) - 1  # before the new answer
        assert kinds[-1] == audit.ANSWER


async def test_a_proof_the_node_did_not_sign_is_ignored(tmp_path: Path) -> None:
    rows = [[Row(person=1, event_date=date(2025, 3, 1))]]
    async with federation(tmp_path, rows) as fed:
        app = fed.node_apps[0]
        connector = app.state.node.connector
        period = app.state.node.answerer.budget_period()
        report = node_report(spent_rho=0.9).model_copy(
            update={"budget": BudgetStatus(period=period, cap_rho=1.0, spent_rho=0.9)}
        )
        message = Poll(aggregator_key_id="0" * 16, report=report)
        forged = sign(POLL, message.model_dump(mode="json"), SigningKey.generate())
        await asyncio.to_thread(connector._apply_budget_proof, forged.model_dump(mode="json"))
        assert spent(fed.nodes[0], period) == 0.0
        genuine = sign(POLL, message.model_dump(mode="json"), app.state.node.key)
        await asyncio.to_thread(connector._apply_budget_proof, genuine.model_dump(mode="json"))
        assert spent(fed.nodes[0], period) == pytest.approx(0.9)
