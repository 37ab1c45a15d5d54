"""`publieksdata ask`: against a fake aggregator (httpx.MockTransport) for every outcome, and
against the real aggregator and nodes in process for the figures and the exports."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread
import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

import publieksdata.ask as ask_module
from aggregator.client import Client
from protocol.query import QuerySpec
from protocol.results import Z95, NodeStatus, RoundResult, RoundState
from publieksdata.cli import app
from publieksdata.render import number
from tests.aggregator.test_client import (
    REVENUE,
    bridged,
    exact_federation,
    exact_sums,
    fake,
    make_result,
    node_rows,
    problem,
    reply,
    seen_in_the_issue,
)

pytestmark = pytest.mark.anyio

runner = CliRunner()
URL = "http://aggregator.test"
TOKEN = "pd_test-token"
AGG = ("--url", URL, "--token", TOKEN)
PARTIAL = (NodeStatus.ANSWERED, NodeStatus.REFUSED, NodeStatus.TIMED_OUT)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def run(*args: str, expect: int = 0) -> Result:
    result = runner.invoke(app, ["ask", *args], env={"COLUMNS": "240"})
    assert result.exit_code == expect, result.output
    assert "Traceback" not in result.output
    return result


def flat(result: Result) -> str:
    """The output on one line, without the tables' box-drawing characters (U+2500 to U+257F)."""
    text = "".join(" " if "\u2500" <= ch <= "\u257f" else ch for ch in result.output)
    return " ".join(text.split())


def aggregator(monkeypatch: pytest.MonkeyPatch, *responses: httpx.Response) -> list[httpx.Request]:
    """Make `publieksdata ask` talk to a fake aggregator; the requests it receives."""
    transport, seen = fake(*responses)
    monkeypatch.setattr(
        ask_module, "open_client", lambda url, token: Client(url, token, transport=transport)
    )
    return seen


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# -- against a fake aggregator ------------------------------------------------------------------


def test_a_partial_result_shows_tables_coverage_and_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = make_result(PARTIAL)
    seen = aggregator(monkeypatch, reply(201, result))
    out_csv, out_json = tmp_path / "out.csv", tmp_path / "out.json"
    args = ("--report", "revenue", "--year", "2025", "--csv", str(out_csv), "--json", str(out_json))
    printed = flat(run(*args, "--lang", "en", *AGG))
    assert json.loads(seen[0].content)["report"]["year"] == 2025
    # revenue k·25,000 cents ± 19.6 cents in euros; visits 10·k ± 19.6, clipped at 0 and
    # flagged as too wide; mean price € 25.00
    assert "revenue (€)" in printed and "music theatre, opera and musical" in printed
    assert "250 (250 – 250) " in printed and "10 (0 – 30) *" in printed
    assert "mean price (€)" in printed and "25.00 (" in printed
    assert "* Unreliable: the 95% interval is wider than ±50% of the estimate" in printed
    assert "Coverage: 1 of 3 institutions answered" in printed
    assert "Instelling 1 refused budget_exhausted: its privacy budget" in printed
    assert "Instelling 2 timed out not_delivered: it did not collect" in printed
    assert "round round-1, quorum 1. Partial result: the totals cover only" in printed
    rows = read_csv(out_csv)
    assert len(rows) == REVENUE.cell_count
    assert rows[1]["artform"] == "musical_opera"
    assert rows[1]["artform_label"] == "music theatre, opera and musical"
    assert rows[1]["revenue_eur"] == "250.0" and rows[1]["visits_se"] == "10.0"
    assert rows[0]["mean_price_eur"] == "" and float(rows[1]["mean_price_eur"]) == 25
    assert (rows[1]["coverage_answered"], rows[1]["coverage_total"], rows[1]["partial"]) == (
        "1",
        "3",
        "True",
    )
    assert RoundResult.model_validate_json(out_json.read_text("utf-8")) == result


def test_negative_and_too_wide_figures_are_shown_as_0_and_flagged_with_the_raw_in_the_exports(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Issue 16: "overig −83 visits" and a mean ticket price of −€754 ± €80k."""
    result = seen_in_the_issue()
    aggregator(monkeypatch, reply(201, result))
    monkeypatch.setattr(ask_module, "console", Console(width=400))  # no cell wraps, anywhere
    out_csv, out_json = tmp_path / "out.csv", tmp_path / "out.json"
    args = ("--report", "revenue", "--csv", str(out_csv), "--json", str(out_json))
    printed = flat(run(*args, *AGG))
    assert "overig 250.000 (171.601 – 328.399) 0 (0 – 0) *" in printed  # revenue, then visits
    assert "muziektheater, opera en musical 0 (0 – 77.645) * 1 (0 – 21) *" in printed
    mean_upper = -754 + Z95 * math.sqrt(40_000**2 + 754**2 * 10**2)  # euros: about ± €80,000
    assert (
        f"muziektheater, opera en musical 0,00 (0,00 – {number(mean_upper, ',.2f', 'nl')}) *"
        in printed
    )
    assert "toneel 250.000 (171.601 – 328.399) 10.000 (9.980 – 10.020) muziektheater" in printed
    assert "toneel 25,00 (17,16 – 32,84) muziektheater" in printed  # Dutch: 1.234,5
    assert "* Onbetrouwbaar: het 95%-interval is breder dan ±50% van de schatting" in printed
    assert "-83" not in printed and "-754" not in printed and "(-" not in printed
    rows = {row["artform"]: row for row in read_csv(out_csv)}
    assert (rows["other"]["visits"], rows["other"]["visits_raw"]) == ("0", "-83")
    assert rows["other"]["visits_too_wide"] == "True"
    opera = rows["musical_opera"]
    assert (opera["revenue_eur"], opera["revenue_eur_raw"]) == ("0.0", "-754.0")
    assert float(opera["mean_price_eur"]) == 0 and float(opera["mean_price_eur_raw"]) == -754
    assert opera["mean_price_eur_too_wide"] == "True"
    assert rows["theatre"]["visits_too_wide"] == "False"
    assert {(r["coverage_answered"], r["coverage_total"], r["partial"]) for r in rows.values()} == {
        ("2", "3", "True")
    }
    assert RoundResult.model_validate_json(out_json.read_text("utf-8")) == result  # raw, cents


def test_would_be_refused_lists_the_nodes_and_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = [
        {"node_id": "n-1", "institution": "Stadsschouwburg", "reason": "budget_exhausted"},
        {"node_id": "n-2", "institution": "Filmhuis", "reason": "policy_cost_too_high"},
    ]
    aggregator(monkeypatch, problem("would_be_refused", 409, nodes=nodes))
    printed = flat(run("--report", "volume", "--rho", "0.6", *AGG, expect=3))
    assert "Stadsschouwburg n-1 budget_exhausted" in printed
    assert "Filmhuis n-2 policy_cost_too_high: de privacykosten liggen boven de grens" in printed
    assert "nothing was sent: what went wrong" in printed


def test_quorum_not_met_exits_3_without_a_csv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    aggregator(monkeypatch, reply(201, make_result(PARTIAL, quorum=2)))
    out_csv, out_json = tmp_path / "out.csv", tmp_path / "out.json"
    args = ("--csv", str(out_csv), "--json", str(out_json))
    printed = flat(run("--report", "revenue", *args, *AGG, expect=3))
    assert "Dekking: 1 van 3 instellingen beantwoordden" in printed and "Instelling 2" in printed
    assert "the quorum was not met: 1 of 3 nodes answered and 2 were needed" in printed
    assert f"{out_csv} was not written" in printed
    assert not out_csv.exists()
    assert not RoundResult.model_validate_json(out_json.read_text("utf-8")).quorum_met


def test_a_spec_file_is_sent_as_the_question(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(REVENUE.model_dump_json(), encoding="utf-8")
    seen = aggregator(
        monkeypatch,
        reply(201, make_result(state=RoundState.OPEN, statuses=(NodeStatus.PENDING,) * 2)),
        reply(200, make_result()),
    )
    args = ("--node", "node-0,node-1", "--deadline", "60", "--quorum", "2", "--shares", "artform")
    printed = flat(run(str(spec), *args, *AGG))
    body = json.loads(seen[0].content)
    assert QuerySpec.model_validate(body["spec"]) == REVENUE
    assert (body["nodes"], body["deadline_seconds"], body["quorum"]) == (
        ["node-0", "node-1"],
        60,
        2,
    )
    assert seen[1].url.params["seen"] == "0"
    assert "Aandelen binnen elke discipline" in printed and "aandeel bezoeken (%)" in printed
    assert "Partial" not in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give a SPEC file or --report"),
        (("spec.json", "--report", "volume"), "give a SPEC file or --report"),
        (("--report", "nope"), "unknown report 'nope'"),
        (("--report", "volume", "--year", "2025", "--start", "2025-01-01"), "not both"),
        (("--report", "volume", "--start", "2025-01-01"), "give both --start and --end"),
        (("--report", "volume", "--rho", "0.1", "--epsilon", "1"), "--rho or --epsilon"),
        (("--report", "volume", "--shares", "age_band"), "grouped by month, artform"),
        (("--report", "volume", "--lang", "fr"), "choose nl or en"),
        (("--report", "volume", "--deadline", "0"), "--deadline"),
        (("--report", "volume", "--csv", "no/such/dir/out.csv"), "no directory no/such/dir"),
    ],
)
def test_usage_errors_exit_2(
    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], message: str
) -> None:
    seen = aggregator(monkeypatch)
    assert message in flat(run(*args, *AGG, expect=2))
    assert seen == []


def test_a_spec_file_with_report_options_is_a_usage_error(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(REVENUE.model_dump_json(), encoding="utf-8")
    assert "go with --report" in flat(run(str(spec), "--year", "2025", *AGG, expect=2))
    spec.write_text("{}", encoding="utf-8")
    assert "is not a valid query spec" in flat(run(str(spec), *AGG, expect=1))


def test_url_and_token_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    given: list[tuple[str | None, str | None]] = []
    transport, _ = fake(reply(201, make_result()))

    def connect(url: str | None, token: str | None) -> Client:
        given.append((url, token))
        return Client(url, token, transport=transport)

    monkeypatch.setattr(ask_module, "open_client", connect)
    env = {"PUBLIEKSDATA_AGGREGATOR_URL": URL, "PUBLIEKSDATA_TOKEN": TOKEN, "COLUMNS": "240"}
    result = runner.invoke(app, ["ask", "--report", "revenue"], env=env)
    assert result.exit_code == 0, result.output
    assert given == [(URL, TOKEN)]


def test_no_url_or_token_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUBLIEKSDATA_AGGREGATOR_URL", raising=False)
    monkeypatch.delenv("PUBLIEKSDATA_TOKEN", raising=False)
    assert "PUBLIEKSDATA_AGGREGATOR_URL" in flat(run("--report", "volume", expect=2))
    assert "PUBLIEKSDATA_TOKEN" in flat(run("--report", "volume", "--url", URL, expect=2))


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (problem("not_authenticated", 401), "(not_authenticated, HTTP 401)"),
        (problem("invalid_query", 422), "title of invalid_query what went wrong"),
        (httpx.Response(503, text="down"), "503 Service Unavailable"),
    ],
)
def test_aggregator_errors_exit_1(
    monkeypatch: pytest.MonkeyPatch, response: httpx.Response, message: str
) -> None:
    aggregator(monkeypatch, response)
    assert message in flat(run("--report", "volume", *AGG, expect=1))


# -- against the real aggregator and nodes ------------------------------------------------------


async def test_in_process_exact_figures_and_exports(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rows = [node_rows(i) for i in range(3)]
    out_csv, out_json = tmp_path / "out.csv", tmp_path / "out.json"
    args = ["--report", "revenue", "--year", "2025", "--lang", "en", "--shares", "artform"]
    args += ["--csv", str(out_csv), "--json", str(out_json)]
    async with exact_federation(tmp_path, rows) as fed:
        with bridged(monkeypatch, fed) as connect:
            monkeypatch.setattr(ask_module, "open_client", connect)
            invoke: Callable[[], Result] = lambda: run(*args)  # noqa: E731
            result = await anyio.to_thread.run_sync(invoke)
    printed = flat(result)
    expected = exact_sums(rows, REVENUE)
    assert "Coverage: 3 of 3 institutions answered" in printed
    assert "Exact figures: noise was switched off" in printed
    assert "Partial" not in printed
    written = read_csv(out_csv)
    assert [int(r["visits"]) for r in written] == expected["visits"]
    assert [float(r["revenue_eur"]) for r in written] == [c / 100 for c in expected["revenue"]]
    assert {r["visits_se"] for r in written} == {"0.0"}
    theatre = written[0]
    mean_cents = expected["revenue"][0] / expected["visits"][0]
    assert float(theatre["mean_price_eur"]) == pytest.approx(mean_cents / 100)
    assert float(theatre["visits_share_artform"]) == expected["visits"][0] / sum(expected["visits"])
    assert f"{expected['revenue'][0] / 100:,.0f} (" in printed  # revenue shown in euros
    saved = RoundResult.model_validate_json(out_json.read_text("utf-8"))
    assert list(saved.measure("visits").estimates) == expected["visits"]


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        ("nl", ("Nodes die zouden weigeren", "instelling", "reden", "Nodes klaar (beantwoord")),
        ("en", ("Nodes that would refuse", "institution", "reason", "Nodes done (answered")),
    ],
)
def test_titles_and_progress_follow_lang(
    monkeypatch: pytest.MonkeyPatch, lang: str, words: tuple[str, ...]
) -> None:
    """The table titles, column heads and the progress bar speak the --lang language."""
    nodes = [{"node_id": "n-1", "institution": "Filmhuis", "reason": "budget_exhausted"}]
    aggregator(monkeypatch, problem("would_be_refused", 409, nodes=nodes))
    printed = flat(run("--report", "volume", "--lang", lang, *AGG, expect=3))
    for word in words:
        assert word in printed, (word, printed)
