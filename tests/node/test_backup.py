"""`publieksdata node backup` and `node restore`, on SQLite (online backup API) and PostgreSQL
(pg_dump of the node's tables, restored in one transaction): everything comes back, the audit
chain still verifies, another node's backup is refused, and a restored node that had joined an
aggregator answers nothing until the budget is confirmed (tests/aggregator/test_restore.py shows
the aggregator's side)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from node.cli import app as node_cli
from node.services import audit, ledger
from node.settings import NodeSettings
from node.storage.db import make_engine, make_sessionmaker
from node.storage.models import Admission, AuditEvent, LedgerEntry
from protocol.messages import Refusal, RefusalReason
from tests.factories import Row, write_rows
from tests.nodekit import make_node, make_spec, open_answerer, request_of

runner = CliRunner()


@pytest.fixture
def node(tmp_path: Path, db_url: str) -> Iterator[tuple[NodeSettings, Engine]]:
    settings, _ = make_node(tmp_path, db_url, budget_rho=1.0)
    engine = make_engine(settings.database_url)
    write_rows(engine, [Row(person=p, event_date=date(2025, 6, p)) for p in range(1, 11)])
    try:
        yield settings, engine
    finally:
        engine.dispose()


def answer(settings: NodeSettings) -> None:
    with open_answerer(settings) as answerer:
        outcome = answerer.answer(request_of(make_spec(rho=0.1)), "k" * 16)
        assert not isinstance(outcome, Refusal)


def spent(engine: Engine, period: str = "2026") -> float:
    with make_sessionmaker(engine)() as session:
        return ledger.spent_units(session, period) / ledger.UNITS_PER_RHO


def test_backup_and_restore(node: tuple[NodeSettings, Engine], tmp_path: Path) -> None:
    settings, engine = node
    answer(settings)
    period = open_answerer_period(settings)
    out = tmp_path / "backup-1"
    made = runner.invoke(node_cli, ["backup", "--home", str(settings.home), "--out", str(out)])
    assert made.exit_code == 0, made.output
    assert f"Budget spent in {period}: ρ = 0.1" in made.output
    assert oct((out / "secret.key").stat().st_mode)[-3:] == "600"
    # Later: another answer, and a person erased.
    answer(settings)
    with engine.begin() as conn:
        conn.execute(Admission.__table__.delete().where(Admission.person_id == 1))
    assert spent(engine, period) == pytest.approx(0.2)
    restored = runner.invoke(
        node_cli, ["restore", "--home", str(settings.home), "--from", str(out)]
    )
    assert restored.exit_code == 0, restored.output
    # This node never joined an aggregator: nothing can confirm its budget, and it says so.
    assert "has not joined an aggregator" in restored.output
    assert not settings.budget_sync_path.exists()
    engine.dispose()
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Admission)) == 10
        assert conn.scalar(select(func.count()).select_from(LedgerEntry)) == 1
        assert conn.scalar(select(AuditEvent.kind).order_by(AuditEvent.seq.desc())) == (
            audit.BACKUP_RESTORED
        )
    assert spent(engine, period) == pytest.approx(0.1)
    verified = runner.invoke(node_cli, ["audit", "verify", "--home", str(settings.home)])
    assert verified.exit_code == 0, verified.output
    assert list(settings.home.glob(".restore.sql")) == []


def open_answerer_period(settings: NodeSettings) -> str:
    with open_answerer(settings) as answerer:
        return answerer.budget_period()


def test_a_joined_node_waits_for_its_aggregator_after_a_restore(
    node: tuple[NodeSettings, Engine], tmp_path: Path
) -> None:
    settings, _ = node
    (settings.home / "aggregator.json").write_text(
        '{"base": "https://aggregator.example", "node_id": "n1", "aggregator_key": "'
        + "A" * 43
        + '", "aggregator_key_id": "'
        + "0" * 16
        + '"}',
        "utf-8",
    )
    out = tmp_path / "backup-2"
    assert (
        runner.invoke(
            node_cli, ["backup", "--home", str(settings.home), "--out", str(out)]
        ).exit_code
        == 0
    )
    restored = runner.invoke(
        node_cli, ["restore", "--home", str(settings.home), "--from", str(out)]
    )
    assert restored.exit_code == 0, restored.output
    assert "answers nothing until its aggregator has confirmed" in restored.output
    assert settings.budget_sync_path.exists()
    with open_answerer(settings) as answerer:
        outcome = answerer.answer(request_of(make_spec()), "k" * 16)
    assert isinstance(outcome, Refusal) and outcome.reason is RefusalReason.BUDGET_SYNC


def test_another_nodes_backup_is_refused(node: tuple[NodeSettings, Engine], tmp_path: Path) -> None:
    settings, _ = node
    other, _ = make_node(tmp_path / "other", f"sqlite:///{tmp_path / 'other.db'}")
    out = tmp_path / "backup-other"
    assert (
        runner.invoke(node_cli, ["backup", "--home", str(other.home), "--out", str(out)]).exit_code
        == 0
    )
    refused = runner.invoke(node_cli, ["restore", "--home", str(settings.home), "--from", str(out)])
    assert refused.exit_code == 1
    message = " ".join(refused.output.split())
    assert "another node's backup" in message or "holds a sqlite database" in message


def test_backup_refuses_an_existing_directory(
    node: tuple[NodeSettings, Engine], tmp_path: Path
) -> None:
    settings, _ = node
    taken = tmp_path / ("a-folder-with-a-long-name-" * 4) / "taken"  # longer than a terminal line
    taken.mkdir(parents=True)
    result = runner.invoke(node_cli, ["backup", "--home", str(settings.home), "--out", str(taken)])
    assert result.exit_code == 1 and "exists already" in result.output
    assert str(taken) in result.output  # the path is printed whole, not wrapped


def test_restore_onto_a_new_machine(tmp_path: Path) -> None:
    """SQLite: the backup alone rebuilds the node in an empty home. (On PostgreSQL the new
    machine's database is made by its operator; the restore itself is tested above.)"""
    settings, _ = make_node(tmp_path / "old", f"sqlite:///{tmp_path / 'old.db'}")
    engine = make_engine(settings.database_url)
    write_rows(engine, [Row(person=p, event_date=date(2025, 6, p)) for p in range(1, 11)])
    engine.dispose()
    out = tmp_path / "backup-3"
    assert (
        runner.invoke(
            node_cli, ["backup", "--home", str(settings.home), "--out", str(out)]
        ).exit_code
        == 0
    )
    fresh = tmp_path / "new-machine"
    env = (out / "node.env").read_text("utf-8")
    assert "DATABASE_URL" in env  # make_node writes it; point it at the new home
    (fresh).mkdir()
    (fresh / "node.env").write_text(
        "\n".join(
            line
            if not line.startswith("PUBLIEKSDATA_NODE_DATABASE_URL")
            else f"PUBLIEKSDATA_NODE_DATABASE_URL=sqlite:///{fresh / 'node.db'}"
            for line in env.splitlines()
        )
        + "\n",
        "utf-8",
    )
    result = runner.invoke(node_cli, ["restore", "--home", str(fresh), "--from", str(out)])
    assert result.exit_code == 0, result.output
    assert (fresh / "secret.key").read_bytes() == (settings.home / "secret.key").read_bytes()
    new_engine = make_engine(f"sqlite:///{fresh / 'node.db'}")
    try:
        with new_engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Admission)) == 10
    finally:
        new_engine.dispose()
