"""`publieksdata node init` sets the admin password (given or generated and printed once),
`node admin-password` changes it and logs every browser out, `node retention` applies the
retention period."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from node.cli import app as node_cli
from node.services.admin_auth import AdminAuth
from node.settings import NodeSettings
from node.storage.db import make_engine, make_sessionmaker
from node.storage.models import AdminAccount, Admission, AuditEvent, Person
from tests.factories import Row, write_rows
from tests.nodekit import make_node

runner = CliRunner()


def _auth(home: Path) -> tuple[AdminAuth, object]:
    settings = NodeSettings.load(home)
    engine = make_engine(settings.database_url)
    factory = make_sessionmaker(engine)
    return AdminAuth(settings, factory, factory), engine


def test_init_generates_a_password_shown_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    home = tmp_path / "node"
    result = runner.invoke(node_cli, ["init", "--name", "Theater", "--home", str(home)])
    assert result.exit_code == 0, result.output
    found = re.search(r"Admin password: (\S+)", result.output)
    assert found, result.output
    password = found.group(1)
    assert "/admin/" in result.output
    auth, engine = _auth(home)
    try:
        assert auth.login("wrong-password-x").token is None
        assert auth.login(password).token is not None
        with engine.connect() as conn:  # type: ignore[attr-defined]
            stored = conn.scalar(select(AdminAccount.password_hash))
        assert stored.startswith("scrypt$") and password not in stored
    finally:
        engine.dispose()  # type: ignore[attr-defined]


def test_init_refuses_a_short_password_and_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "node"
    result = runner.invoke(
        node_cli, ["init", "--name", "T", "--home", str(home), "--admin-password", "short"]
    )
    assert result.exit_code == 1 and "at least 10 characters" in result.output
    assert not home.exists()


def test_admin_password_changes_it_and_ends_sessions(tmp_path: Path) -> None:
    home = tmp_path / "node"
    given = "first-password-1"
    assert (
        runner.invoke(
            node_cli, ["init", "--name", "T", "--home", str(home), "--admin-password", given]
        ).exit_code
        == 0
    )
    auth, engine = _auth(home)
    try:
        session = auth.login(given)
        assert session.token is not None and auth.session(session.token) is not None
        result = runner.invoke(
            node_cli, ["admin-password", "--home", str(home)], input="second-password-2\n" * 2
        )
        assert result.exit_code == 0, result.output
        assert auth.session(session.token) is None
        assert auth.login(given).token is None
        assert auth.login("second-password-2").token is not None
        generated = runner.invoke(node_cli, ["admin-password", "--home", str(home), "--generate"])
        assert generated.exit_code == 0
        new = re.search(r"New password: (\S+)", generated.output)
        assert new and auth.login(new.group(1)).token is not None
    finally:
        engine.dispose()  # type: ignore[attr-defined]


def test_retention_command(tmp_path: Path) -> None:
    settings, _ = make_node(tmp_path, f"sqlite:///{tmp_path / 'n.db'}", retention_days=100)
    engine = make_engine(settings.database_url)
    try:
        today = datetime.now(UTC).date()
        write_rows(
            engine,
            [
                Row(person=1, event_date=today - timedelta(days=200)),
                Row(person=2, event_date=today - timedelta(days=150)),
                Row(person=2, event_date=today - timedelta(days=5)),
            ],
        )
        result = runner.invoke(node_cli, ["retention", "--home", str(settings.home)])
        assert result.exit_code == 0, result.output
        assert "Deleted 2 admissions" in result.output and "1 persons" in result.output
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Admission)) == 1
            assert conn.scalar(select(func.count()).select_from(Person)) == 1
            assert conn.scalar(select(AuditEvent.kind).order_by(AuditEvent.seq.desc())) == (
                "retention"
            )
    finally:
        engine.dispose()


def test_retention_command_without_a_period_says_so(tmp_path: Path) -> None:
    settings, _ = make_node(tmp_path, f"sqlite:///{tmp_path / 'n.db'}")
    result = runner.invoke(node_cli, ["retention", "--home", str(settings.home)])
    assert result.exit_code == 1 and "no retention period is set" in result.output
