"""The key holder's migrated schema equals its models (SQLite and PostgreSQL), and its CLI:
ceremony, init, invite, status and remove, as an operator runs them."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

from keyholder.share import ShareFile, ShareFileError
from keyholder.storage.db import SchemaOutOfDate, make_sync_engine, require_current_schema, upgrade
from keyholder.storage.models import Base
from protocol import oprf
from publieksdata.cli import app

runner = CliRunner()


def test_migrated_schema_equals_models(db_url: str) -> None:
    with pytest.raises(SchemaOutOfDate, match="publieksdata keyholder db upgrade"):
        require_current_schema(db_url)
    upgrade(db_url)
    require_current_schema(db_url)
    engine = make_sync_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_ceremony_init_invite_status_remove(tmp_path: Path) -> None:
    out = tmp_path / "ceremony"
    made = runner.invoke(app, ["keyholder", "ceremony", "--out", str(out)])
    assert made.exit_code == 0, made.output
    files = sorted(out.glob("share-*.json"))
    assert [f.name for f in files] == ["share-1.json", "share-2.json", "share-3.json"]
    shares = [ShareFile.read(f) for f in files]
    assert len({s.key_set for s in shares}) == 1
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    # any two shares interpolate to the public key: k·G = Σ λ_i (k_i·G), checked on scalars
    lambdas = oprf.lagrange_at_zero([1, 3])
    key = (lambdas[0] * shares[0].share + lambdas[1] * shares[2].share) % oprf.L
    assert oprf.public_element(key).hex() == shares[0].public_key

    home = tmp_path / "kh"
    init = runner.invoke(
        app,
        ["keyholder", "init", "--share", str(files[1]), "--name", "CBS", "--home", str(home)],
    )
    assert init.exit_code == 0, init.output
    assert "share 2 of 3" in init.output
    again = runner.invoke(
        app,
        ["keyholder", "init", "--share", str(files[1]), "--name", "CBS", "--home", str(home)],
    )
    assert again.exit_code == 1
    invite = runner.invoke(app, ["keyholder", "invite", "Stadsschouwburg", "--home", str(home)])
    assert invite.exit_code == 0, invite.output
    assert "node keyholders join" in invite.output
    status = runner.invoke(app, ["keyholder", "status", "--home", str(home)])
    assert status.exit_code == 0, status.output
    assert "share 2 of 3" in status.output
    removed = runner.invoke(app, ["keyholder", "remove", "n0000000000", "--home", str(home)])
    assert removed.exit_code == 1
    assert "no enrolled node" in removed.output


def test_a_tampered_share_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "ceremony"
    assert runner.invoke(app, ["keyholder", "ceremony", "--out", str(out)]).exit_code == 0
    doc = json.loads((out / "share-1.json").read_text())
    doc["index"] = 2  # claims another holder's place
    with pytest.raises(ShareFileError, match="does not match its public share"):
        ShareFile.from_json(json.dumps(doc))
    init = runner.invoke(
        app,
        [
            "keyholder",
            "init",
            "--share",
            str(tmp_path / "missing.json"),
            "--name",
            "X",
            "--home",
            str(tmp_path / "kh"),
        ],
    )
    assert init.exit_code == 1
