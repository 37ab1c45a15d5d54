"""`publieksdata node …` commands that need no import: init, db, keys, budget, ask, GDPR."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from node.cli import EXIT_ERROR, EXIT_REFUSED
from node.identity import load_signing_key
from node.services.answering import LOCAL_OPERATOR
from node.settings import ENV_FILE, NodeSettings
from node.storage.db import head_revision, make_engine
from node.storage.models import Admission, LedgerEntry, Person
from protocol.messages import QueryAnswer
from protocol.signing import SigningKey, fingerprint, public_key_to_text
from publieksdata.cli import app
from tests.factories import Row, write_rows
from tests.nodekit import give_identifiers, make_spec

runner = CliRunner()


def run(*args: str, expect: int = 0, stdin: str | None = None) -> Result:
    result = runner.invoke(app, ["node", *args], input=stdin, env={"COLUMNS": "240"})
    assert result.exit_code == expect, result.output
    assert "Traceback" not in result.output
    return result


def flat(result: Result) -> str:
    return " ".join(result.output.split())


@pytest.fixture
def home(tmp_path: Path, db_url: str) -> Path:
    home = tmp_path / "home"
    run("init", "--name", "Stadsschouwburg", "--home", str(home), "--database-url", db_url)
    return home


def settings_of(home: Path) -> NodeSettings:
    return NodeSettings.load(home)


# -- init and database --------------------------------------------------------------------------


def test_init_creates_a_node_and_refuses_a_second_time(tmp_path: Path) -> None:
    home = tmp_path / "node"
    first = run("init", "--name", "Stadsschouwburg", "--home", str(home))
    key = load_signing_key(home / "signing.key")
    assert key.key_id in first.output
    assert fingerprint(key.public) in flat(first)
    assert (home / "node.db").exists()
    assert (home / "secret.key").stat().st_mode & 0o077 == 0
    keys = {name: (home / name).read_bytes() for name in ("secret.key", "signing.key")}
    second = run("init", "--name", "Iets anders", "--home", str(home), expect=EXIT_ERROR)
    assert "already holds a node" in flat(second)
    assert {name: (home / name).read_bytes() for name in keys} == keys
    assert settings_of(home).institution == "Stadsschouwburg"


def test_commands_without_a_node_say_how_to_make_one(tmp_path: Path) -> None:
    result = run("budget", "--home", str(tmp_path / "nowhere"), expect=EXIT_ERROR)
    assert "publieksdata node init" in flat(result)


def test_db_status_and_upgrade(tmp_path: Path, db_url: str) -> None:
    home = tmp_path / "home"
    run("init", "--name", "X", "--home", str(home), "--database-url", f"sqlite:///{tmp_path}/a.db")
    # Point the node at an empty database, as after restoring an old backup or a new server.
    env = home / ENV_FILE
    lines = [ln for ln in env.read_text().splitlines() if "DATABASE_URL" not in ln]
    env.write_text("\n".join([*lines, f"PUBLIEKSDATA_NODE_DATABASE_URL={db_url}"]) + "\n")
    head = head_revision()

    assert "OUT OF DATE" in run("db", "status", "--home", str(home)).output
    for command in (("budget",), ("serve",), ("keys", "list")):
        refused = run(*command, "--home", str(home), expect=EXIT_ERROR)
        assert "publieksdata node db upgrade" in flat(refused), command
    upgraded = run("db", "upgrade", "--home", str(home))
    assert f"upgraded from empty to {head}" in flat(upgraded)
    assert "up to date" in run("db", "status", "--home", str(home)).output
    assert f"up to date (schema {head})" in flat(run("db", "upgrade", "--home", str(home)))
    assert "of 1 used" in flat(run("budget", "--home", str(home)))


# -- keys ---------------------------------------------------------------------------------------


def test_keys_show(home: Path) -> None:
    key = load_signing_key(home / "signing.key")
    shown = flat(run("keys", "show", "--home", str(home)))
    assert key.key_id in shown
    assert public_key_to_text(key.public) in shown
    assert fingerprint(key.public) in shown
    assert "PRIVATE" not in shown


def test_keys_trust_list_remove(home: Path) -> None:
    assert "trusts no querier keys" in run("keys", "list", "--home", str(home)).output
    querier = SigningKey.generate()
    text = public_key_to_text(querier.public)
    trusted = flat(
        run("keys", "trust", "--public-key", text, "--label", "Taskforce", "--home", str(home))
    )
    assert querier.key_id in trusted and fingerprint(querier.public) in trusted
    listed = flat(run("keys", "list", "--home", str(home)))
    assert querier.key_id in listed and "Taskforce" in listed
    # Trusting again relabels; it does not duplicate.
    run("keys", "trust", "--public-key", text, "--label", "Sector body", "--home", str(home))
    listed = flat(run("keys", "list", "--home", str(home)))
    assert listed.count(querier.key_id) == 1 and "Sector body" in listed
    run("keys", "remove", querier.key_id, "--home", str(home))
    assert "trusts no querier keys" in run("keys", "list", "--home", str(home)).output
    again = run("keys", "remove", querier.key_id, "--home", str(home), expect=EXIT_ERROR)
    assert "no trusted key" in flat(again)


def test_keys_trust_refuses_a_malformed_key(home: Path) -> None:
    result = run(
        "keys",
        "trust",
        "--public-key",
        "not-a-key",
        "--label",
        "x",
        "--home",
        str(home),
        expect=EXIT_ERROR,
    )
    assert "Ed25519" in flat(result)


# -- budget and ask -----------------------------------------------------------------------------


@pytest.fixture
def data_home(home: Path) -> Path:
    engine = make_engine(settings_of(home).database_url)
    try:
        write_rows(
            engine,
            [Row(person=p, event_date=date(2025, 1 + p % 12, 10)) for p in range(1, 40)],
        )
    finally:
        engine.dispose()
    return home


def ledger_rows(home: Path) -> list[tuple[str, str, str, float]]:
    engine = make_engine(settings_of(home).database_url)
    try:
        with engine.connect() as conn:
            c = LedgerEntry.__table__.c
            rows = conn.execute(select(c.query_id, c.analyst, c.requester_key_id, c.rho))
            return [tuple(r) for r in rows]
    finally:
        engine.dispose()


def test_budget_and_ask_with_a_report(data_home: Path) -> None:
    home = str(data_home)
    assert "ρ 0 of 1 used, 1 left" in flat(run("budget", "--home", home))
    answer = flat(
        run("ask", "--report", "volume", "--year", "2025", "--rho", "0.1", "--home", home)
    )
    assert "ρ = 0.1" in answer
    assert "0.1 of 1 used, 0.9 left" in answer
    assert "ρ 0.1 of 1 used, 0.9 left" in flat(run("budget", "--home", home))
    [(_, analyst, requester, rho)] = ledger_rows(data_home)
    assert (analyst, requester, rho) == ("operator", LOCAL_OPERATOR, 0.1)


def test_ask_json(data_home: Path) -> None:
    result = run(
        "ask",
        "--report",
        "reach_age",
        "--year",
        "2025",
        "--rho",
        "0.2",
        "--json",
        "--home",
        str(data_home),
    )
    answer = QueryAnswer.model_validate_json(result.stdout)
    assert answer.group_by == ("age_band",)
    assert answer.privacy.rho == 0.2
    assert answer.noise is True


def test_ask_with_a_spec_file(data_home: Path, tmp_path: Path) -> None:
    spec = make_spec("q-from-a-file", rho=0.05, group_by=("month",))
    path = tmp_path / "query.json"
    path.write_text(spec.model_dump_json(), encoding="utf-8")
    run("ask", "--spec", str(path), "--home", str(data_home))
    run("ask", "--spec", str(path), "--home", str(data_home))  # the stored answer, no new spend
    assert [row[0] for row in ledger_rows(data_home)] == ["q-from-a-file"]
    assert "ρ 0.05 of 1 used" in flat(run("budget", "--home", str(data_home)))


def test_ask_refusals_exit_3_and_spend_nothing(data_home: Path) -> None:
    home = str(data_home)
    costly = run("ask", "--report", "volume", "--rho", "0.6", "--home", home, expect=EXIT_REFUSED)
    assert "policy_cost_too_high" in flat(costly)
    for _ in range(2):
        run("ask", "--report", "volume", "--year", "2025", "--rho", "0.5", "--home", home)
    broke = run("ask", "--report", "volume", "--rho", "0.01", "--home", home, expect=EXIT_REFUSED)
    assert "budget_exhausted" in flat(broke)
    assert len(ledger_rows(data_home)) == 2


def test_ask_usage_errors(data_home: Path, tmp_path: Path) -> None:
    home = str(data_home)
    assert "either --report" in flat(run("ask", "--home", home, expect=EXIT_ERROR))
    unknown = run("ask", "--report", "nonsense", "--home", home, expect=EXIT_ERROR)
    assert "unknown report" in flat(unknown)
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"period": {"start": "2025-12-31", "end": "2025-01-01"}, "privacy": {"rho": 0.1}}'
    )
    invalid = run("ask", "--spec", str(bad), "--home", home, expect=EXIT_ERROR)
    assert "swap them" in flat(invalid)
    missing = run(
        "ask", "--spec", str(tmp_path / "missing.json"), "--home", home, expect=EXIT_ERROR
    )
    assert "cannot read" in flat(missing)
    assert ledger_rows(data_home) == []


# -- GDPR ---------------------------------------------------------------------------------------


@pytest.fixture
def gdpr_home(home: Path) -> Path:
    settings = settings_of(home)
    engine = make_engine(settings.database_url)
    try:
        write_rows(
            engine,
            [
                Row(person=1, event_date=date(2025, 2, 1), pc4="1012"),
                Row(person=1, event_date=date(2025, 3, 1), artform="dance"),
                Row(person=2, event_date=date(2025, 3, 1)),
            ],
        )
        give_identifiers(engine, settings, {1: "Anna@Example.nl", 2: "K-00042"})
    finally:
        engine.dispose()
    return home


def people(home: Path) -> tuple[int, int]:
    engine = make_engine(settings_of(home).database_url)
    try:
        with engine.connect() as conn:
            persons = len(conn.execute(select(Person.id)).all())
            admissions = len(conn.execute(select(Admission.id)).all())
            return persons, admissions
    finally:
        engine.dispose()


def test_export_person(gdpr_home: Path) -> None:
    result = run("export-person", "--identifier", " anna@EXAMPLE.nl ", "--home", str(gdpr_home))
    data = json.loads(result.stdout)
    assert data["person"]["pc4"] == "1012"
    assert [a["artform"] for a in data["admissions"]] == ["theatre", "dance"]
    unknown = run("export-person", "--identifier", "nobody@example.nl", "--home", str(gdpr_home))
    assert "Nothing is stored" in unknown.output


def test_forget(gdpr_home: Path) -> None:
    home = str(gdpr_home)
    declined = run(
        "forget", "--identifier", "anna@example.nl", "--home", home, stdin="n\n", expect=EXIT_ERROR
    )
    assert "Delete this person" in declined.output
    assert people(gdpr_home) == (2, 3)
    deleted = run("forget", "--identifier", "ANNA@example.nl", "--yes", "--home", home)
    assert "Deleted the person and 2 admission(s)" in flat(deleted)
    assert people(gdpr_home) == (1, 1)
    again = run("forget", "--identifier", "anna@example.nl", "--yes", "--home", home)
    assert "nothing was deleted" in flat(again)
    confirmed = run("forget", "--identifier", "k-00042", "--home", home, stdin="y\n")
    assert "Deleted the person and 1 admission(s)" in flat(confirmed)
    assert people(gdpr_home) == (0, 0)
