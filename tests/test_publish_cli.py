"""`publieksdata aggregator publish` against a real in-process federation (noise on): it asks
the reports of the built-in annual recipe, publishes, and a second run with the same rounds and
a correction note makes version 2. Before asking any round it checks the whole recipe against
the token's role and every node's budget; a retry reuses the rounds a failed run completed."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from typer.testing import CliRunner, Result

import publieksdata.releases as releases_module
from aggregator.client import Client
from protocol.results import Z95
from publieksdata.cli import app
from tests.aggregator.test_client import ThreadBridge, bridged
from tests.aggregator.test_pooled import audience
from tests.fedkit import Federation, federation

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


async def test_publish_asks_the_reports_then_a_correction_reuses_the_rounds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rows = [audience(i, 200, seed=40 + i) for i in range(3)]
    async with federation(tmp_path, rows) as fed:
        with bridged(monkeypatch, fed) as connect:
            monkeypatch.setattr(releases_module, "open_client", connect)
            first: Callable[[], Result] = lambda: run(  # noqa: E731
                "aggregator", "publish", "standard-2025", "--token", fed.admin
            )
            result = await anyio.to_thread.run_sync(first)
            assert result.exit_code == 0, result.output
            assert "Published sector-2025-v1: version 1, 6 tables" in result.output
            rounds = dict(re.findall(r"report (\w+): round ([0-9a-f-]{36})", result.output))
            assert set(rounds) == {"volume", "reach_age", "origin_province", "segment_profile"}

            again = ["aggregator", "publish", "standard-2025", "--token", fed.admin]
            for report, round_id in rounds.items():
                again += ["--round", f"{report}={round_id}"]
            refused = await anyio.to_thread.run_sync(lambda: run(*again))
            assert refused.exit_code == 1 and "correction" in refused.output
            corrected = await anyio.to_thread.run_sync(
                lambda: run(*again, "--correction-nl", "Titel", "--correction-en", "Title")
            )
            assert corrected.exit_code == 0, corrected.output
            assert "Published sector-2025-v2: version 2" in corrected.output
            assert "report volume" not in corrected.output  # nothing was asked again
            analyst = await anyio.to_thread.run_sync(
                lambda: run(*again[:3], "--token", fed.analyst, *again[5:])
            )
            assert analyst.exit_code == 1 and "needs an admin token" in analyst.output
    usage = run("aggregator", "publish", "no-such-recipe", "--token", "pd_x")
    assert usage.exit_code == 2 and "not a built-in recipe" in usage.output
    bad_round = run("aggregator", "publish", "standard-2025", "--round", "volume", "--token", "x")
    assert bad_round.exit_code == 2


ROUND_ID = r"[0-9a-f-]{36}"


async def reported(fed: Federation) -> list[dict[str, Any]]:
    """The nodes once each has signed a report of its budget (with its first poll)."""
    with anyio.fail_after(20):
        while True:
            response = await fed.client.get("/v1/nodes", headers=fed.as_(fed.analyst))
            nodes: list[dict[str, Any]] = response.json()
            if nodes and all(n["budget"] is not None for n in nodes):
                return nodes
            await anyio.sleep(0.05)


async def round_ids(fed: Federation) -> list[str]:
    response = await fed.client.get("/v1/rounds", headers=fed.as_(fed.analyst))
    return sorted(r["round_id"] for r in response.json())


async def publish(*args: str) -> Result:
    return await anyio.to_thread.run_sync(lambda: run("aggregator", "publish", *args))


async def test_publish_refuses_before_any_round_for_an_analyst_token_or_a_recipe_beyond_budget(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Issue 16: an analyst token asked all four reports before its 403; a retry with the admin
    # token asked three more before the fourth was refused for budget.
    rows = [audience(i, 60, seed=50 + i) for i in range(3)]
    async with federation(tmp_path, rows, node_settings={"budget_rho": 0.35}) as fed:
        with bridged(monkeypatch, fed) as connect:
            monkeypatch.setattr(releases_module, "open_client", connect)
            nodes = await reported(fed)

            analyst = await publish("standard-2025", "--token", fed.analyst)
            assert analyst.exit_code == 1, analyst.output
            assert "this token has the analyst role; publishing needs an admin token" in (
                analyst.output
            )
            assert "no round was asked and no budget was spent" in analyst.output
            assert await round_ids(fed) == []

            admin = await publish("standard-2025", "--token", fed.admin)
            assert admin.exit_code == 1, admin.output
            for node in nodes:
                assert (
                    f"{node['institution']} (node {node['node_id']}) would refuse "
                    "(segment_profile: budget_exhausted): the recipe needs ρ 0.4 of it (volume "
                    "ρ 0.1, reach_age ρ 0.1, origin_province ρ 0.1, segment_profile ρ 0.1); it "
                    "has spent ρ 0 of its cap ρ 0.35 for 2026, ρ 0 is held by open rounds, "
                    "ρ 0.35 is left"
                ).replace("2026", node["budget"]["period"]) in admin.output
            assert "no round was asked and no budget was spent" in admin.output
            assert await round_ids(fed) == []

            dry = await publish("standard-2025", "--dry-run", "--token", fed.admin)
            assert dry.exit_code == 1, dry.output
            assert "report volume: a new round, ρ 0.1 per node" in dry.output
            assert dry.output.count("costs ρ 0.4; spent ρ 0 of cap ρ 0.35") == 3
            assert dry.output.count("left; would refuse (segment_profile: budget_exhausted)") == 3
            assert await round_ids(fed) == []
            assert [n["budget"]["spent_rho"] for n in await reported(fed)] == [0.0, 0.0, 0.0]


class FailsOneReport(httpx.BaseTransport):
    """The aggregator, reached through a connection that fails while one report is asked."""

    def __init__(self, inner: httpx.BaseTransport, report: str) -> None:
        self.inner = inner
        self.report = report

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        asks = request.method == "POST" and request.url.path == "/v1/rounds"
        if asks and json.loads(request.content)["report"]["name"] == self.report:
            return httpx.Response(502, text="Bad Gateway")
        return self.inner.handle_request(request)


async def test_a_retry_after_a_failure_midway_reuses_the_completed_rounds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str
) -> None:
    rows = [audience(i, 60, seed=60 + i) for i in range(3)]
    async with federation(tmp_path, rows, agg_db_url=db_url) as fed:
        with bridged(monkeypatch, fed) as connect:
            await reported(fed)
            flaky = FailsOneReport(ThreadBridge(httpx.ASGITransport(fed.app)), "segment_profile")
            monkeypatch.setattr(
                releases_module,
                "open_client",
                lambda url, token: Client(url, token, transport=flaky),
            )
            failed = await publish("standard-2025", "--token", fed.admin)
            assert failed.exit_code == 1, failed.output
            done = dict(re.findall(rf"report (\w+): round ({ROUND_ID})", failed.output))
            assert list(done) == ["volume", "reach_age", "origin_province"]
            assert "report segment_profile: the server answered 502" in failed.output
            named = ", ".join(f"{name}={round_id}" for name, round_id in done.items())
            assert f"completed rounds: {named}; run the same command again" in failed.output
            # What is left to ask, and each node's budget after the three completed rounds.
            assert failed.output.count("costs ρ 0.1; spent ρ 0.3 of cap ρ 1 for") == 3
            assert await round_ids(fed) == sorted(done.values())

            monkeypatch.setattr(releases_module, "open_client", connect)
            dry = await publish("standard-2025", "--dry-run", "--token", fed.admin)
            assert dry.exit_code == 0, dry.output
            for name, round_id in done.items():
                assert f"report {name}: reuses round {round_id} (found" in dry.output
            assert "report segment_profile: a new round, ρ 0.1 per node" in dry.output

            retry = await publish("standard-2025", "--token", fed.admin)
            assert retry.exit_code == 0, retry.output
            assert "Published sector-2025-v1" in retry.output
            for name, round_id in done.items():
                assert f"report {name}: round {round_id} (reused" in retry.output
            [new] = re.findall(rf"report segment_profile: round ({ROUND_ID})", retry.output)
            assert await round_ids(fed) == sorted([*done.values(), new])  # one round more
            spent = [round(n["budget"]["spent_rho"], 9) for n in await reported(fed)]
            assert spent == [0.4, 0.4, 0.4]  # four reports, each asked once


async def test_a_dry_run_shows_each_tables_expected_half_width_which_the_release_then_has(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rows = [audience(i, 200, seed=70 + i) for i in range(3)]
    async with federation(tmp_path, rows) as fed:
        await reported(fed)
        with bridged(monkeypatch, fed) as connect:
            monkeypatch.setattr(releases_module, "open_client", connect)
            dry = await publish("standard-2025", "--dry-run", "--token", fed.admin)
            assert dry.exit_code == 0, dry.output
            assert await round_ids(fed) == []  # the preview asked nothing
            expected = dict(re.findall(r"\n  ([a-z0-9-]+) \(\w+\): ± ([\d,]+)", dry.output))
            done = await publish("standard-2025", "--token", fed.admin)
            assert done.exit_code == 0, done.output
        response = await fed.client.get("/releases/sector-2025-v1.json")
    assert response.status_code == 200
    release = response.json()
    tables = release.get("payload", release)["tables"]
    assert set(expected) == {t["table_id"] for t in tables}
    for table in tables:
        realised = {
            f"{Z95 * cell['standard_error']:,.0f}"
            for cell in table["cells"]
            if cell["standard_error"] is not None
        }
        assert realised == {expected[table["table_id"]]}, table["table_id"]
