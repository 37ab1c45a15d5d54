"""A preview says, before anything is asked or spent, what each node would pay, which nodes
would refuse and how wide each cell's 95% interval will be (issue 16).

The predicted half-width is checked against the intervals of real rounds with noise on (real
node apps, OpenDP noise), in independent and in secure mode: the noise-only part (standard
error and half-width) must be equal, not close, since both come from the same functions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from sqlalchemy import func, select

import publieksdata.ask as ask_module
from aggregator.accuracy import STANDARD_SUPPRESSION, predict
from node.storage.db import make_engine
from node.storage.models import LedgerEntry
from protocol.preview import RoundPreview
from protocol.publication import is_too_wide, shown_from
from protocol.query import Mode
from protocol.reports import REPORTS, year_period
from protocol.results import Z95, RoundResult
from tests.aggregator.test_client import async_client, bridged
from tests.aggregator.test_pooled import audience
from tests.fedkit import Federation, assert_problem, federation, hand_node, node_report
from tests.test_ask_cli import flat, run

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def reported(fed: Federation) -> None:
    """Wait until every node's first poll has carried its signed report (budget and policy);
    the timeout (real seconds) only guards against a hanging test."""
    with anyio.fail_after(30):
        while True:
            listed = (await fed.client.get("/v1/nodes", headers=fed.as_(fed.analyst))).json()
            if all(n["budget"] is not None for n in listed):
                return
            await anyio.sleep(0.02)


async def preview(fed: Federation, **body: Any) -> RoundPreview:
    response = await fed.client.post("/v1/rounds/preview", json=body, headers=fed.as_(fed.analyst))
    assert response.status_code == 200, response.text
    return RoundPreview.model_validate(response.json())


def ledgers(fed: Federation) -> list[int]:
    counts = []
    for node in fed.nodes:
        engine = make_engine(node.database_url)
        try:
            with engine.connect() as conn:
                counts.append(conn.scalar(select(func.count()).select_from(LedgerEntry)) or 0)
        finally:
            engine.dispose()
    return counts


async def rounds(fed: Federation) -> list[Any]:
    listed = await fed.client.get("/v1/rounds", headers=fed.as_(fed.analyst))
    assert listed.status_code == 200
    result: list[Any] = listed.json()
    return result


def assert_realised(seen: RoundPreview, result: RoundResult) -> None:
    """Every cell's standard error and interval is the one the preview predicted."""
    assert result.noise and result.quorum_met and result.failure is None
    assert [m.measure for m in seen.measures] == list(result.spec.measures)
    for predicted in seen.measures:
        realised = result.measure(predicted.measure)
        assert set(realised.standard_errors) == {predicted.standard_error}
        for estimate, lower, upper in zip(
            realised.estimates, realised.lower, realised.upper, strict=True
        ):
            assert upper == estimate + predicted.half_width
            assert lower == estimate - predicted.half_width
        assert predicted.half_width > 0


@pytest.mark.parametrize("mode", [Mode.INDEPENDENT, Mode.SECURE])
async def test_the_predicted_half_width_is_the_realised_one(
    tmp_path: Path, db_url: str, mode: Mode
) -> None:
    node_rows = [audience(i, 30 + 5 * i, seed=i) for i in range(3)]
    question = {"report": {"name": "standard", "year": 2025, "rho": 0.1, "mode": mode.value}}
    async with federation(tmp_path, node_rows, agg_db_url=db_url) as fed:
        await reported(fed)
        before = ledgers(fed)
        seen = await preview(fed, **question)
        # Nothing was asked, created or spent.
        assert await rounds(fed) == []
        assert ledgers(fed) == before
        assert seen.mode is mode and seen.answering == 3 and seen.problem is None
        assert seen.threshold == (2 if mode is Mode.SECURE else None)
        assert [n.refusal for n in seen.nodes] == [None] * 3
        assert {n.rho for n in seen.nodes} == {0.1}
        created = await fed.ask(**question)
        result = await fed.wait(created.round_id)
    assert result.coverage.answered == 3
    assert_realised(seen, result)


async def test_a_preview_lists_the_nodes_that_would_refuse_and_spends_nothing(
    tmp_path: Path,
) -> None:
    node_rows = [audience(i, 20, seed=i) for i in range(3)]
    async with federation(tmp_path, node_rows, node_settings={"budget_rho": 0.3}) as fed:
        await reported(fed)
        # 0.6 is above every node's max_rho_per_query: all three would refuse.
        question = {"report": {"name": "volume", "year": 2025, "rho": 0.6}}
        seen = await preview(fed, **question)
        assert {n.refusal for n in seen.nodes} == {"policy_cost_too_high"}
        assert seen.answering == 0 and seen.measures == ()
        assert seen.problem is not None and "3 of 3 nodes would refuse" in seen.problem
        # POST /v1/rounds agrees: the same nodes, the same reason.
        response = await fed.client.post("/v1/rounds", json=question, headers=fed.as_(fed.analyst))
        body = assert_problem(response, 409, "would_be_refused")
        assert sorted(n["node_id"] for n in body["nodes"]) == sorted(n.node_id for n in seen.nodes)
        assert await rounds(fed) == [] and ledgers(fed) == [0, 0, 0]


async def test_the_client_previews_with_the_same_arguments_as_ask(tmp_path: Path) -> None:
    node_rows = [audience(i, 20, seed=i) for i in range(2)]
    async with federation(tmp_path, node_rows) as fed:
        await reported(fed)
        async with async_client(fed) as client:
            seen = await client.preview(report="revenue", year=2025, rho=0.2, mode="independent")
            with pytest.raises(TypeError):
                await client.preview(report="revenue", year=2025, wait=False)
        assert await rounds(fed) == []
    assert isinstance(seen, RoundPreview) and seen.answering == 2
    spec = REPORTS["revenue"].build(period=year_period(2025), rho=0.2, mode=Mode.INDEPENDENT)
    assert seen.measures == predict(spec, 2)


def test_the_half_width_is_independent_noise_summed_over_the_answering_nodes() -> None:
    spec = REPORTS["volume"].build(period=year_period(2025), rho=0.1, mode=Mode.INDEPENDENT)
    one, four = predict(spec, 1)[0], predict(spec, 4)[0]
    assert four.noise_sd == one.noise_sd and four.terms == 4
    assert four.standard_error == pytest.approx(2 * one.standard_error, rel=1e-12)
    assert four.half_width == pytest.approx(Z95 * four.standard_error, rel=1e-15)
    assert one.shown_from == pytest.approx(one.half_width / 0.5)


def test_secure_noise_shares_sum_to_about_one_curators_noise() -> None:
    spec = REPORTS["volume"].build(period=year_period(2025), rho=0.1, mode=Mode.SECURE)
    independent = REPORTS["volume"].build(period=year_period(2025), rho=0.1, mode=Mode.INDEPENDENT)
    curator = predict(independent, 1)[0].standard_error
    at_threshold = predict(spec, 4, threshold=4)[0]
    assert at_threshold.standard_error == pytest.approx(curator, rel=1e-6)
    # More answers than t add more shares: wider, by √(n/t).
    more = predict(spec, 6, threshold=4)[0]
    assert more.standard_error == pytest.approx(curator * math.sqrt(6 / 4), rel=1e-6)
    with pytest.raises(ValueError, match="threshold"):
        predict(spec, 4)


@pytest.mark.parametrize("half", [0.0, 3.7, 49.0, 1234.5])
def test_shown_from_is_the_boundary_of_the_suppression_rule(half: float) -> None:
    limit = STANDARD_SUPPRESSION
    assert limit == 0.5
    least = shown_from(half, limit)
    assert least is not None
    assert not is_too_wide(least, half, limit)
    assert is_too_wide(math.nextafter(least, 0), half, limit) is (half > 0)
    assert shown_from(half, None) is None and not is_too_wide(1.0, half, None)


async def test_ask_preview_prints_costs_refusals_and_half_widths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "preview.json"
    args = ["--report", "revenue", "--year", "2025", "--rho", "0.2", "--mode", "independent"]
    args += ["--preview", "--lang", "en", "--json", str(out)]
    refused = ["--report", "volume", "--year", "2025", "--rho", "0.6", "--preview", "--lang", "en"]
    node_rows = [audience(i, 20, seed=i) for i in range(2)]
    async with federation(tmp_path, node_rows) as fed:
        await reported(fed)
        with bridged(monkeypatch, fed) as connect:
            monkeypatch.setattr(ask_module, "open_client", connect)
            shown = await anyio.to_thread.run_sync(lambda: run(*args))
            turned_down = await anyio.to_thread.run_sync(lambda: run(*refused, expect=3))
        assert await rounds(fed) == [] and ledgers(fed) == [0, 0]
    saved = RoundPreview.model_validate_json(out.read_text("utf-8"))
    spec = REPORTS["revenue"].build(period=year_period(2025), rho=0.2, mode=Mode.INDEPENDENT)
    assert saved.measures == predict(spec, 2)
    printed = flat(shown)
    assert "Preview: nothing was asked and no budget was spent." in printed
    assert "Expected accuracy of each cell (2 answers, independent)" in printed
    visits, revenue = (saved.measure(m) for m in ("visits", "revenue"))
    assert f"{visits.half_width:,.1f}" in printed
    assert f"{revenue.half_width / 100:,.1f}" in printed  # revenue in euros
    assert f"{visits.shown_from:,.0f}" in printed
    assert printed.count("Instelling") == 2 and "answer" in printed
    text = flat(turned_down)
    assert text.count("refuse: policy_cost_too_high") == 2
    assert "this question would be turned down: 2 of 2 nodes would refuse" in text


async def test_with_a_refusing_node_the_accuracy_is_that_of_the_round_without_it(
    tmp_path: Path,
) -> None:
    node_rows = [audience(i, 25, seed=i) for i in range(3)]
    question = {"report": {"name": "volume", "year": 2025, "rho": 0.1, "mode": "secure"}}
    async with federation(tmp_path, node_rows, start_nodes=lambda i: i < 2) as fed:
        broke = hand_node(fed, 2)
        spent = node_report("Instelling 2", cap_rho=1.0, spent_rho=1.0)
        assert (await broke.poll(report=spent)).status_code == 200
        await reported(fed)
        seen = await preview(fed, **question)
        by_id = {n.node_id: n for n in seen.nodes}
        assert by_id[broke.node_id].refusal == "budget_exhausted"
        assert [n.refusal for n in seen.nodes].count(None) == 2
        assert seen.threshold == 2 and seen.answering == 2  # t of 3 nodes, then of the 2 left
        assert seen.problem is not None and seen.problem.startswith("1 of 3 nodes would refuse")
        others = [n.node_id for n in seen.nodes if n.refusal is None]
        assert await rounds(fed) == []
        result = await fed.wait((await fed.ask(**question, nodes=others)).round_id)
    assert result.coverage.answered == 2
    assert_realised(seen, result)
