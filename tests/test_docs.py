"""The docs are executable, so they never rot.

* The tutorial (docs/tutorials/run-a-node.md) is run command by command in a fresh directory.
* The generated tables in the reference docs (catalogue, standard reports, error codes) must equal
  what the code says. After changing the catalogue, the reports or the error catalogue, regenerate
  them with::

      python -m tests.test_docs

* Every setting, every CLI command and option, and every exit code is documented.
* The numbers of the worked example in docs/explanation/privacy.md match ``calibrations()``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

from aggregator.settings import AggregatorSettings
from keyholder.settings import KeyholderSettings
from node import cli as node_cli
from node.errors import CATALOGUE as ERROR_CATALOGUE
from node.privacy.noise import zcdp_to_epsilon
from node.privacy.release import calibrations
from node.settings import NodeSettings
from protocol.catalogue import DIMENSIONS, UNKNOWN, DimensionKind
from protocol.messages import RefusalReason
from protocol.query import QuerySpec
from protocol.reports import REPORTS, year_period
from publieksdata.cli import app as publieksdata_app

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TUTORIAL = DOCS / "tutorials" / "run-a-node.md"
QUERY_SPEC = DOCS / "reference" / "query-spec.md"
CONFIGURATION = DOCS / "reference" / "configuration.md"
CLI_REFERENCE = DOCS / "reference" / "cli.md"
PRIVACY = DOCS / "explanation" / "privacy.md"

Z95 = 1.959963984540054
# The worked example of privacy.md: the standard report for one year at ρ = 0.25.
WORKED_EXAMPLE_RHO = 0.25
WORKED_EXAMPLE_DELTA = 1e-7

# Non-`publieksdata` commands the tutorial may show; the test does not run them.
INSTALL_COMMANDS = {
    "scripts/bootstrap",
    "source .venv/bin/activate",
    "python3 -m venv .venv",
    "pip install .",
}


# -- generated Markdown regions -----------------------------------------------------------------


def region(text: str, name: str) -> str:
    """The text between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    match = re.search(
        rf"<!-- {re.escape(name)}:start -->\n(.*?)<!-- {re.escape(name)}:end -->", text, re.S
    )
    if match is None:
        raise AssertionError(f"the docs have no region {name!r}")
    return match.group(1)


def replace_region(text: str, name: str, body: str) -> str:
    old = region(text, name)
    start = f"<!-- {name}:start -->\n"
    return text.replace(start + old, start + body, 1)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def catalogue_markdown() -> str:
    """Every dimension of the catalogue, then the codes of every enumerated dimension."""
    lines = [
        "| dimension | Dutch label | English label | kind | values |",
        "|---|---|---|---|---|",
    ]
    for dim in DIMENSIONS.values():
        if dim.kind is DimensionKind.ENUMERATED:
            values = f"{len(dim.values)} codes, see below"
        elif dim.kind is DimensionKind.TEMPORAL:
            values = f"every period that overlaps the query period, as `{_cell(dim.pattern or '')}`"
        else:
            values = f"codes the query lists in `domains`, matching `{_cell(dim.pattern or '')}`"
        if dim.kind is not DimensionKind.ENUMERATED:
            values += f"; and `{UNKNOWN}`"
        lines.append(
            f"| `{dim.name}` | {_cell(dim.nl)} | {_cell(dim.en)} | {dim.kind.value} | {values} |"
        )
    for dim in DIMENSIONS.values():
        if dim.kind is not DimensionKind.ENUMERATED:
            continue
        lines += [
            "",
            f"#### `{dim.name}`: {_cell(dim.nl)} / {_cell(dim.en)}",
            "",
            f"{dim.description}",
            "",
            "| code | Dutch | English |",
            "|---|---|---|",
        ]
        lines += [f"| `{v.code}` | {_cell(v.nl)} | {_cell(v.en)} |" for v in dim.values]
    return "\n".join(lines) + "\n"


def reports_markdown() -> str:
    lines = [
        "| report | question | group by | measures | c | max cells | g | revenue clamp (cents) "
        "| cells (one year) |",
        "|---|---|---|---|---:|---:|---:|---|---:|",
    ]
    for rep in REPORTS.values():
        b = rep.bounds
        if rep.needs_domain is None:
            spec = rep.build(period=year_period(2025), rho=0.1)
            cells, g = str(spec.cell_count), spec.cells_per_person
        else:
            cells = f"one per listed `{rep.needs_domain}` code"
            g = b.effective_cells_per_person
        lines.append(
            f"| `{rep.name}` | {_cell(rep.title_en)} | "
            + ", ".join(f"`{d}`" for d in rep.group_by)
            + " | "
            + ", ".join(m.value for m in rep.measures)
            + f" | {b.max_visits_per_person} | {b.max_cells_per_person} "
            f"| {g} "
            f"| {b.revenue_min_cents} to {b.revenue_max_cents} | {cells} |"
        )
    return "\n".join(lines) + "\n"


def error_codes_markdown() -> str:
    lines = ["| code | HTTP status | title |", "|---|---:|---|"]
    for code, info in ERROR_CATALOGUE.items():
        lines.append(f"| `{code.value}` | {info.status} | {_cell(info.title)} |")
    return "\n".join(lines) + "\n"


GENERATED = {
    (QUERY_SPEC, "catalogue"): catalogue_markdown,
    (QUERY_SPEC, "reports"): reports_markdown,
    (QUERY_SPEC, "error-codes"): error_codes_markdown,
}


def regenerate() -> None:
    for (path, name), render in GENERATED.items():
        path.write_text(replace_region(path.read_text("utf-8"), name, render()), "utf-8")
        print(f"regenerated {name} in {path.relative_to(ROOT)}")


@pytest.mark.parametrize(("path", "name"), list(GENERATED), ids=[n for _, n in GENERATED])
def test_generated_tables_match_the_code(path: Path, name: str) -> None:
    expected = GENERATED[(path, name)]()
    assert region(path.read_text("utf-8"), name) == expected, (
        f"the {name} table in {path.relative_to(ROOT)} is out of date; "
        "run: python -m tests.test_docs"
    )


def test_query_spec_example_is_valid() -> None:
    text = QUERY_SPEC.read_text("utf-8")
    example = re.search(r"<!-- example-spec -->\n```json\n(.*?)```", text, re.S)
    assert example is not None, "query-spec.md lost its marked example spec"
    spec = QuerySpec.model_validate_json(example.group(1))
    assert spec.cell_count > 0


def test_every_refusal_reason_is_documented() -> None:
    text = QUERY_SPEC.read_text("utf-8")
    missing = [r.value for r in RefusalReason if f"`{r.value}`" not in text]
    assert not missing, f"query-spec.md does not document refusal reasons {missing}"


# -- links ----------------------------------------------------------------------------------------

OWN_PAGES = [
    DOCS / "index.md",
    TUTORIAL,
    PRIVACY,
    DOCS / "explanation" / "architecture.md",
    DOCS / "explanation" / "threat-model.md",
    DOCS / "explanation" / "secure-aggregation.md",
    DOCS / "explanation" / "secure-noise.md",
    DOCS / "explanation" / "reach-privacy.md",
    DOCS / "reference" / "secure-aggregation-vectors.md",
    DOCS / "reference" / "release-recipes.md",
    DOCS / "explanation" / "releases.md",
    DOCS / "how-to" / "publish-annual-figures.md",
    DOCS / "how-to" / "run-your-node.md",
    DOCS / "how-to" / "back-up-a-node.md",
    DOCS / "how-to" / "deploy-node.md",
    DOCS / "how-to" / "deploy-aggregator.md",
    DOCS / "how-to" / "run-your-node.nl.md",
    DOCS / "explanation" / "node-administration.md",
    CONFIGURATION,
    CLI_REFERENCE,
    QUERY_SPEC,
]


def slug(heading: str) -> str:
    """The anchor MkDocs (Python-Markdown's toc) gives a heading."""
    text = unicodedata.normalize("NFKD", heading.replace("`", ""))
    text = re.sub(r"[^\w\s-]", "", text.encode("ascii", "ignore").decode()).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text("utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", OWN_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_links_resolve(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text("utf-8"), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, fragment = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and fragment not in anchors(linked):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.relative_to(DOCS)} has broken links: {broken}"


# -- configuration and CLI reference ------------------------------------------------------------


def test_every_setting_is_documented() -> None:
    text = CONFIGURATION.read_text("utf-8")
    names: list[str] = []
    for settings, prefix in (
        (NodeSettings, "PUBLIEKSDATA_NODE_"),
        (AggregatorSettings, "PUBLIEKSDATA_AGGREGATOR_"),
        (KeyholderSettings, "PUBLIEKSDATA_KEYHOLDER_"),
    ):
        assert settings.model_config.get("env_prefix") == prefix, settings.__name__
        names += [f"{prefix}{field.upper()}" for field in settings.model_fields]
    names += [
        "PUBLIEKSDATA_TESTING",
        "PUBLIEKSDATA_REQUIRE_POSTGRES",
        "PUBLIEKSDATA_TEST_POSTGRES_URL",
        "PUBLIEKSDATA_LOG_LEVEL",
    ]
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"configuration.md does not document {missing}"


def _commands(command: Any, path: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    """Every command and group under ``command`` (a Click command built by Typer)."""
    yield " ".join(path), command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _cli_sections(text: str) -> dict[str, str]:
    """Section text per documented command, keyed by its heading's `publieksdata …` path."""
    sections: dict[str, str] = {}
    heads = list(re.finditer(r"^#+ `(publieksdata[^`]*)`.*$", text, re.M))
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        sections[head.group(1).strip()] = text[head.end() : end]
    return sections


def test_every_cli_command_and_option_is_documented() -> None:
    sections = _cli_sections(CLI_REFERENCE.read_text("utf-8"))
    commands = dict(_commands(typer.main.get_command(publieksdata_app), ("publieksdata",)))
    assert len(commands) > 20, "the command tree was not walked"
    problems = []
    for name, command in commands.items():
        if name not in sections:
            problems.append(f"no section for `{name}`")
            continue
        for param in command.params:
            if param.name in ("help", "install_completion", "show_completion"):
                continue
            if param.param_type_name == "argument":
                wanted = [str(param.name).upper()]
            else:
                wanted = [*param.opts, *param.secondary_opts]
            for word in wanted:
                if f"`{word}" not in sections[name]:
                    problems.append(f"`{name}` does not document {word}")
    assert not problems, "docs/reference/cli.md: " + "; ".join(problems)


def test_exit_codes_are_documented() -> None:
    table = region(CLI_REFERENCE.read_text("utf-8"), "exit-codes")
    codes = {int(m.group(1)) for m in re.finditer(r"^\| (\d) \|", table, re.M)}
    assert codes == {0, 1, 2, node_cli.EXIT_REFUSED, node_cli.EXIT_IMPORT_REFUSED}
    assert node_cli.EXIT_ERROR == 1


# -- the worked example of privacy.md -----------------------------------------------------------


def _table_rows(block: str) -> list[list[str]]:
    rows = []
    for line in block.splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:]  # drop the header


def _matches(printed: str, actual: float) -> bool:
    """Whether ``printed`` is ``actual`` rounded to the digits shown."""
    text = printed.replace(",", "").replace(" ", "")
    decimals = len(text.partition(".")[2])
    tolerance = 0.5 * 10.0**-decimals + 1e-12 * abs(actual)
    return abs(float(text) - actual) <= tolerance


def test_worked_example_matches_the_calibration() -> None:
    spec = REPORTS["standard"].build(period=year_period(2025), rho=WORKED_EXAMPLE_RHO)
    cals = {m.value: cal for m, cal in calibrations(spec).items()}
    rows = _table_rows(region(PRIVACY.read_text("utf-8"), "worked-example"))
    assert [row[0].split()[0] for row in rows] == list(cals)
    for row in rows:
        cal = cals[row[0].split()[0]]
        sens_l1, sens_l2, rho, sigma, margin = row[1:6]
        expected = {
            "Δ₁": (sens_l1, cal.sensitivity.l1),
            "Δ₂": (sens_l2, cal.sensitivity.l2),
            "ρ": (rho, cal.rho),
            "σ": (sigma, cal.scale),
            "margin": (margin, Z95 * cal.noise_sd),
        }
        for what, (printed, actual) in expected.items():
            assert _matches(printed, actual), f"{row[0]}: {what} is {actual}, docs say {printed}"


def test_epsilon_table_matches_the_conversion() -> None:
    rows = _table_rows(region(PRIVACY.read_text("utf-8"), "epsilon-table"))
    assert rows
    for rho_text, tight, simple in (row[:3] for row in rows):
        rho = float(rho_text)
        assert _matches(tight, zcdp_to_epsilon(rho, WORKED_EXAMPLE_DELTA)), rho_text
        bound = rho + 2 * math.sqrt(rho * math.log(1 / WORKED_EXAMPLE_DELTA))
        assert _matches(simple, bound), rho_text


# -- the tutorial, run for real -----------------------------------------------------------------


def tutorial_commands() -> list[str]:
    """Every ``$ `` line of the tutorial's ``console`` blocks, in order (``\\`` continues)."""
    commands: list[str] = []
    in_console = False
    pending = ""
    for line in TUTORIAL.read_text("utf-8").splitlines():
        if line.startswith("```"):
            in_console = not in_console and line.strip() == "```console"
            continue
        if not in_console:
            continue
        if pending:
            pending += " " + line.strip()
        elif line.startswith("$ "):
            pending = line[2:].strip()
        else:
            continue
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
        else:
            commands.append(pending)
            pending = ""
    return commands


def publieksdata_command() -> list[str]:
    """The installed console script (next to this Python, else on PATH), else ``-m``."""
    sibling = Path(sys.executable).parent / "publieksdata"
    if sibling.exists():
        return [str(sibling)]
    found = shutil.which("publieksdata")
    if found:
        return [found]
    return [sys.executable, "-m", "publieksdata"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _clean_env() -> dict[str, str]:
    """The environment of a user who just installed publieksdata: no test or node settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PUBLIEKSDATA_") and not k.startswith("COV_")
    }
    env["COLUMNS"] = "120"
    return env


def _serve(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [*argv, "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                raise AssertionError(f"serve exited with {process.returncode}:\n{output}")
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("serve did not answer /v1/health within 60 s")
            time.sleep(0.2)
        assert health.json()["status"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).status_code == 200
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover - uvicorn stops on SIGTERM
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_tutorial_runs(tmp_path: Path) -> None:
    commands = tutorial_commands()
    subcommands = {c.split()[2] for c in commands if c.startswith("publieksdata node ")}
    for needed in ("init", "generate", "import", "ask", "budget", "serve", "export-person"):
        assert needed in subcommands, f"the tutorial no longer shows `node {needed}`"
    assert "forget" in subcommands

    program = publieksdata_command()
    env = _clean_env()
    cwd = tmp_path
    for command in commands:
        words = shlex.split(command)
        if command in INSTALL_COMMANDS:
            continue
        if words[0] == "mkdir" and len(words) == 2:
            (cwd / words[1]).mkdir()
            continue
        if words[0] == "cd" and len(words) == 2:
            cwd = (cwd / words[1]).resolve()
            continue
        assert words[0] == "publieksdata", f"the tutorial runs an unexpected command: {command}"
        argv = [*program, *words[1:]]
        if words[1:3] == ["node", "serve"]:
            _serve(argv, cwd, env)
            continue
        if words[1:3] == ["node", "forget"] and "--yes" not in words:
            argv.append("--yes")
        result = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, (
            f"`{command}` exited with {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        if words[1:3] == ["node", "export-person"]:
            found = json.loads(result.stdout)
            assert found["admissions"], "the tutorial's identifier finds nobody"
        if words[1:3] == ["node", "forget"]:
            assert "Deleted the person" in result.stdout, result.stdout


if __name__ == "__main__":
    regenerate()
