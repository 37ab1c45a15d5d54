"""`publieksdata node import`: what the operator reads on the command line."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from node.cli import EXIT_ERROR, EXIT_IMPORT_REFUSED
from publieksdata.cli import app
from tests.node.test_ingest_import import generic_row, write

runner = CliRunner()


def node_import(home: Path, *args: str, expect: int) -> str:
    result: Result = runner.invoke(
        app, ["node", "import", *args, "--home", str(home)], env={"COLUMNS": "240"}
    )
    assert result.exit_code == expect, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


def make_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    result = runner.invoke(app, ["node", "init", "--name", "Schouwburg", "--home", str(home)])
    assert result.exit_code == 0, result.output
    return home


def test_messages_keep_the_names_of_profile_settings(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    (tmp_path / "kolommen.csv").write_text("Ticket;Klant;Prijs\n1;2;3\n", "utf-8")
    out = node_import(home, str(tmp_path / "kolommen.csv"), "--profile", "generic",
                      expect=EXIT_ERROR)  # fmt: skip
    assert "or adjust the profile's [columns]." in out
    path = write(tmp_path / "kassa.csv", generic_row("T1", status="zoek"), generic_row("T2"))
    out = node_import(home, str(path), "--profile", "generic", expect=EXIT_IMPORT_REFUSED)
    assert "[values.status]" in out


def test_too_many_rejects_refuse_the_import_also_with_skip_invalid(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    rows = [generic_row(f"T{i}", price="x" if i < 2 else "10,00") for i in range(20)]
    path = write(tmp_path / "kassa.csv", *rows)
    out = node_import(home, str(path), "--profile", "generic", "--skip-invalid",
                      expect=EXIT_IMPORT_REFUSED)  # fmt: skip
    assert "2 of 20 rows (10%) were rejected, more than the 5% allowed" in out
    assert "✓" not in out and "Rejected rows are listed in" in out
    assert (tmp_path / "kassa.rejects.csv").exists()
    out = node_import(home, str(path), "--profile", "generic", "--skip-invalid",
                      "--max-rejected-share", "0.1", expect=0)  # fmt: skip
    assert "18 new" in out and "2 rejected" in out


def test_a_header_only_file_is_not_reported_as_already_imported(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    path = write(tmp_path / "leeg.csv")
    out = node_import(home, str(path), "--profile", "generic", expect=EXIT_ERROR)
    assert "has column names but no rows; nothing was imported" in out
    assert "already imported" not in out
