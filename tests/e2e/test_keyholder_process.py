"""Three real key holders (`publieksdata keyholder serve`, uvicorn on loopback) and a node that
enrols with them and imports through the CLI; then one holder too many is stopped, and the
import fails cleanly with nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from keyholder.home import init_home as init_keyholder
from keyholder.services.enrolment import create_invite
from keyholder.share import ceremony
from keyholder.storage.db import make_sessionmaker as keyholder_sessions
from keyholder.storage.db import make_sync_engine
from node.home import init_home
from node.identity import load_signing_key
from node.services.sector_enrolment import join
from node.storage.db import make_engine
from node.storage.models import Admission, Person, SectorPseudonym
from publieksdata.cli import app
from publieksdata.processes import Service, Supervisor, free_port, start
from tests.node.test_ingest_import import generic_row, write

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "publieksdata", *arguments],
        capture_output=True,
        text=True,
        timeout=90,
        env=dict(os.environ, COLUMNS="200"),
        check=False,
    )


def _invite(database_url: str) -> str:
    engine = make_sync_engine(database_url)
    try:
        with keyholder_sessions(engine).begin() as session:
            code, _ = create_invite(session, "Theater", datetime.now(UTC), timedelta(hours=1))
    finally:
        engine.dispose()
    return code


@pytest.fixture
def holders(tmp_path: Path) -> Iterator[list[tuple[Service, str]]]:
    with Supervisor() as supervisor:
        running = []
        for share in ceremony(2, 3):
            home = tmp_path / f"kh{share.index}"
            settings = init_keyholder(home, share, f"Holder {share.index}")
            port = free_port()
            service = supervisor.add(
                start(
                    f"keyholder-{share.index}",
                    ["keyholder", "serve", "--home", str(home), "--port", str(port)],
                    port,
                    tmp_path / f"kh{share.index}.log",
                    {"PUBLIEKSDATA_LOG_LEVEL": "info"},
                )
            )
            running.append((service, _invite(settings.database_url)))
        for service, _ in running:  # started together, then awaited
            service.wait_healthy(30)
        yield running


def test_node_imports_through_real_key_holders(
    tmp_path: Path, holders: list[tuple[Service, str]]
) -> None:
    node = init_home(tmp_path / "node", "Theater")
    first, code = holders[0]
    joined = CliRunner().invoke(
        app, ["node", "keyholders", "join", first.url, "--invite", code, "--home", str(node.home)]
    )
    assert joined.exit_code == 0, joined.output
    assert "Enrolled with key holder Holder 1" in joined.output
    assert "enrol with 1 more" in joined.output
    key = load_signing_key(node.signing_key_path)
    with httpx.Client(timeout=30) as client:  # what 'node keyholders join' runs
        for service, code in holders[1:]:
            join(node.home, node.institution, key, service.url, code, client)
    listed = CliRunner().invoke(app, ["node", "keyholders", "list", "--home", str(node.home)])
    assert listed.exit_code == 0
    assert "2 of 3" in listed.output
    email = "e2e.bezoeker@voorbeeld.nl"
    export = write(
        tmp_path / "export.csv",
        generic_row("T1", customer_id="1", email=email),
        generic_row("T2", customer_id="2", email="tweede@voorbeeld.nl"),
    )
    done = _cli("node", "import", str(export), "--profile", "generic", "--home", str(node.home))
    assert done.returncode == 0, done.stderr
    assert "Sector pseudonyms: 2 new" in done.stdout

    # One holder down: 2 of 3 still answer.
    holders[0][0].stop()
    again = write(
        tmp_path / "again.csv", generic_row("T3", customer_id="3", email="derde@voorbeeld.nl")
    )
    done = _cli("node", "import", str(again), "--profile", "generic", "--home", str(node.home))
    assert done.returncode == 0, done.stderr

    # Two down: the import fails and writes nothing.
    holders[1][0].stop()
    last = write(
        tmp_path / "last.csv", generic_row("T4", customer_id="4", email="vierde@voorbeeld.nl")
    )
    failed = _cli("node", "import", str(last), "--profile", "generic", "--home", str(node.home))
    assert failed.returncode == 1
    assert "needs 2 of 3 key holders, but only 1 answered" in failed.stderr
    engine = make_engine(node.database_url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Person)) == 3
            assert conn.scalar(select(func.count()).select_from(Admission)) == 3
            assert conn.scalar(select(func.count()).select_from(SectorPseudonym)) == 3
    finally:
        engine.dispose()
    for service, _ in holders:
        assert email not in service.output()
    assert email.encode() not in Path(node.database_url.removeprefix("sqlite:///")).read_bytes()
