"""`publieksdata aggregator publish` against a real in-process federation (noise on): it asks
the reports of the built-in annual recipe, publishes, and a second run with the same rounds and
a correction note makes version 2."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread
import pytest
from typer.testing import CliRunner, Result

import publieksdata.releases as releases_module
from publieksdata.cli import app
from tests.aggregator.test_client import bridged
from tests.aggregator.test_pooled import audience
from tests.fedkit import federation

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
            assert analyst.exit_code == 1 and "forbidden" in analyst.output
    usage = run("aggregator", "publish", "no-such-recipe", "--token", "pd_x")
    assert usage.exit_code == 2 and "not a built-in recipe" in usage.output
    bad_round = run("aggregator", "publish", "standard-2025", "--round", "volume", "--token", "x")
    assert bad_round.exit_code == 2
