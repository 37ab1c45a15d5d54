"""The audit log's hash chain: built on every answer and refusal, verified, tamper-evident (a
changed, removed or inserted event, a rewritten head, an answer whose event is gone), forked by no
concurrent writers (SQLite and PostgreSQL), and checked by ``publieksdata node audit verify``."""

from __future__ import annotations

import csv
import io
import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select, update
from typer.testing import CliRunner

from node.cli import app as node_cli
from node.services import audit
from node.storage.db import make_engine, make_sessionmaker, transaction
from node.storage.models import AuditEvent, AuditHead, LedgerEntry
from protocol.messages import Refusal
from tests.factories import Row, write_rows
from tests.nodekit import make_node, make_spec, open_answerer, request_of


@pytest.fixture
def answered(tmp_path: Path, db_url: str) -> Iterator[tuple[Path, Engine]]:
    """A node that answered three queries and refused one."""
    settings, querier = make_node(tmp_path, db_url, budget_rho=1.0, max_cells=50)
    engine = make_engine(settings.database_url)
    from datetime import date

    write_rows(engine, [Row(person=p, event_date=date(2025, 2, p)) for p in range(1, 9)])
    with open_answerer(settings) as answerer:
        for group_by in ((), ("month",), ("artform",)):
            outcome = answerer.answer(request_of(make_spec(group_by=group_by)), querier.key_id)
            assert not isinstance(outcome, Refusal)
        refused = answerer.answer(
            request_of(make_spec(group_by=("month", "artform", "age_band"))), querier.key_id
        )
        assert isinstance(refused, Refusal)
    try:
        yield settings.home, engine
    finally:
        engine.dispose()


def verify(engine: Engine) -> audit.Verification:
    with make_sessionmaker(engine)() as session:
        return audit.verify(session)


def test_answers_and_refusals_are_chained(answered: tuple[Path, Engine]) -> None:
    _, engine = answered
    result = verify(engine)
    assert result.ok, result.problems
    with engine.connect() as conn:
        events = conn.execute(select(AuditEvent).order_by(AuditEvent.seq)).all()
        ledger_rows = conn.execute(select(LedgerEntry.query_id, LedgerEntry.answer_sha256)).all()
    kinds = [e.kind for e in events]
    assert kinds == [audit.ANSWER] * 3 + [audit.REFUSAL]
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert events[0].prev_hash == audit.GENESIS
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    logged = {
        json.loads(e.body)["query_id"]: json.loads(e.body)["answer_sha256"] for e in events[:3]
    }
    assert logged == dict(ledger_rows)
    refusal = json.loads(events[3].body)
    assert refusal["reason"] == "policy_too_many_cells"
    assert refusal["query"]["group_by"] == ["month", "artform", "age_band"]
    assert result.head_hash == events[-1].hash


def _tamper(engine: Engine, statement: object) -> list[str]:
    with engine.begin() as conn:
        conn.execute(statement)  # type: ignore[call-overload]
    return list(verify(engine).problems)


def test_a_changed_event_is_found(answered: tuple[Path, Engine]) -> None:
    _, engine = answered
    with engine.connect() as conn:
        body = conn.scalar(select(AuditEvent.body).where(AuditEvent.seq == 2))
    assert body is not None
    changed = body.replace('"rho":', '"rho":0.0001,"x":')
    problems = _tamper(engine, update(AuditEvent).where(AuditEvent.seq == 2).values(body=changed))
    assert "event 2 was changed after it was written" in problems


def test_a_removed_event_is_found(answered: tuple[Path, Engine]) -> None:
    _, engine = answered
    problems = _tamper(engine, delete(AuditEvent).where(AuditEvent.seq == 2))
    assert "event 2 is missing (the next one is 3)" in problems
    assert "event 3 does not follow the event before it" in problems
    assert any("is not in the audit log" in p for p in problems)


def test_a_truncated_tail_is_found_by_the_head(answered: tuple[Path, Engine]) -> None:
    _, engine = answered
    problems = _tamper(engine, delete(AuditEvent).where(AuditEvent.seq == 4))
    assert problems == ["the chain's recorded head does not match its last event"]


def test_a_fully_rewritten_chain_changes_the_head_hash(answered: tuple[Path, Engine]) -> None:
    """Someone with write access can recompute every hash; the head hash kept elsewhere shows it."""
    _, engine = answered
    before = verify(engine).head_hash
    with engine.begin() as conn:
        rows = conn.execute(select(AuditEvent).order_by(AuditEvent.seq)).all()
        prev = audit.GENESIS
        for row in rows:
            body = row.body.replace('"analyst":"a"', '"analyst":"b"')
            digest = audit.chain_hash(prev, body)
            conn.execute(
                update(AuditEvent)
                .where(AuditEvent.seq == row.seq)
                .values(body=body, prev_hash=prev, hash=digest)
            )
            prev = digest
        conn.execute(update(AuditHead).values(hash=prev))
    after = verify(engine)
    assert after.ok and after.head_hash != before


def test_concurrent_appends_never_fork_the_chain(tmp_path: Path, db_url: str) -> None:
    settings, _ = make_node(tmp_path, db_url)
    engine = make_engine(settings.database_url)
    factory = make_sessionmaker(engine)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                with transaction(factory) as session:
                    audit.append(session, audit.IMPORT, batch=n * 100 + i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    result = verify(engine)
    assert result.ok and result.events == 60
    engine.dispose()


def test_cli_verifies_and_exports(answered: tuple[Path, Engine], tmp_path: Path) -> None:
    home, engine = answered
    runner = CliRunner()
    ok = runner.invoke(node_cli, ["audit", "verify", "--home", str(home)])
    assert ok.exit_code == 0, ok.output
    assert "intact: 4 events" in ok.output
    out = tmp_path / "audit.csv"
    exported = runner.invoke(
        node_cli, ["audit", "export", "--home", str(home), "--out", str(out), "--lang", "en"]
    )
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(out.read_text("utf-8"))))
    assert [r["kind"] for r in rows] == ["answer", "answer", "answer", "refusal"]
    assert rows[1]["query"] == "Visits by month for 2025"
    assert rows[3]["hash"] == verify(engine).head_hash
    with engine.begin() as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.seq == 1).values(kind="import"))
    bad = runner.invoke(node_cli, ["audit", "verify", "--home", str(home)])
    assert bad.exit_code == 1
    assert "event 1: its columns disagree with its content" in bad.output
