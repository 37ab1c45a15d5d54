"""The release plan (aggregator/releases/plan.py): the whole recipe judged against the token's role
and every node's last signed budget and policy, before any round is asked. The pure functions
take Node rows carrying a signed report, no database; the last test calls the route."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.releases.plan import Question, plan, same_question, within_period
from aggregator.storage.models import Node
from protocol.api import ReleasePlan
from protocol.query import Mode, QuerySpec
from protocol.reports import report, year_period
from tests.aggregator.test_attacks import visits
from tests.fedkit import assert_problem, federation, node_report

NOW = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def node(i: int, *, cap: float = 1.0, spent: float = 0.0) -> Node:
    signed = node_report(f"Instelling {i}", cap_rho=cap, spent_rho=spent)
    return Node(id=f"n{i}", institution=f"Instelling {i}", report=signed.model_dump_json())


def spec(name: str, rho: float = 0.1, mode: Mode = Mode.INDEPENDENT) -> QuerySpec:
    return report(name).build(period=year_period(2025), rho=rho, mode=mode)


QUESTIONS = [Question(name, spec(name)) for name in ("volume", "reach_age", "segment_profile")]


def test_a_recipe_within_every_budget_has_no_problems_and_sums_its_cost_per_node() -> None:
    planned = plan(
        "sector-2025",
        QUESTIONS,
        [node(0), node(1, spent=0.5)],
        {},
        role="admin",
        may_publish=True,
        threshold=None,
    )
    assert planned.ok and planned.may_publish
    assert [round(n.cost_rho, 9) for n in planned.nodes] == [0.3, 0.3]
    assert [n.remaining_rho for n in planned.nodes] == [1.0, 0.5]
    assert all(not n.refusals for n in planned.nodes)
    assert [r.rho for r in planned.reports] == [0.1, 0.1, 0.1]


def test_an_analyst_token_is_a_problem_before_any_round() -> None:
    planned = plan(
        "sector-2025", QUESTIONS, [node(0)], {}, role="analyst", may_publish=False, threshold=None
    )
    assert not planned.ok
    assert planned.problems == [
        "this token has the analyst role; publishing needs an admin token. No round was asked "
        "and no budget was spent"
    ]


def test_the_sum_over_the_recipe_is_judged_not_each_round_alone() -> None:
    # Each round alone fits in ρ 0.25 left; the three together (0.3) do not: the third is refused.
    tight = node(1, spent=0.75)
    planned = plan(
        "sector-2025",
        QUESTIONS,
        [node(0), tight],
        {},
        role="admin",
        may_publish=True,
        threshold=None,
    )
    assert [n.refusals for n in planned.nodes] == [[], ["segment_profile: budget_exhausted"]]
    [problem] = planned.problems
    assert problem == (
        "Instelling 1 (node n1) would refuse (segment_profile: budget_exhausted): the recipe "
        "needs ρ 0.3 of it (volume ρ 0.1, reach_age ρ 0.1, segment_profile ρ 0.1); it has spent "
        "ρ 0.75 of its cap ρ 1 for 2025, ρ 0 is held by open rounds, ρ 0.25 is left"
    )


def test_open_rounds_hold_budget_and_reused_rounds_cost_nothing() -> None:
    held = plan(
        "sector-2025",
        QUESTIONS,
        [node(0, spent=0.65)],
        {"n0": 0.2},
        role="admin",
        may_publish=True,
        threshold=None,
    )
    assert held.nodes[0].refusals == [
        "reach_age: budget_exhausted",
        "segment_profile: budget_exhausted",
    ]
    reused = [Question("volume", spec("volume"), "r-1", True), *QUESTIONS[1:2]]
    cheap = plan(
        "sector-2025",
        reused,
        [node(0, spent=0.65)],
        {"n0": 0.2},
        role="admin",
        may_publish=True,
        threshold=None,
    )
    assert cheap.ok and round(cheap.nodes[0].cost_rho, 9) == 0.1
    assert [(r.report, r.rho, r.round_id, r.found) for r in cheap.reports] == [
        ("volume", 0.0, "r-1", True),
        ("reach_age", 0.1, None, False),
    ]


def test_a_policy_refusal_and_an_unreported_node() -> None:
    costly = [Question("volume", spec("volume", rho=1.5))]  # above max_rho_per_query 1.0
    silent = Node(id="n9", institution="Stil", report=None)
    planned = plan(
        "x", costly, [node(0, cap=5.0), silent], {}, role="admin", may_publish=True, threshold=None
    )
    assert [n.refusals for n in planned.nodes] == [["volume: policy_cost_too_high"], []]
    assert planned.nodes[1].cap_rho is None and planned.nodes[1].cost_rho == 1.5
    assert len(planned.problems) == 1 and "Instelling 0 (node n0)" in planned.problems[0]
    nobody = plan("x", costly, [], {}, role="admin", may_publish=True, threshold=None)
    assert nobody.problems == ["no nodes are enrolled, so the recipe's reports cannot be asked"]


def test_the_same_question_whatever_its_query_id_and_within_the_budget_period() -> None:
    a = spec("volume").model_copy(update={"query_id": "pd-1"})
    b = spec("volume").model_copy(update={"query_id": "pd-2"})
    assert same_question(a, b)
    assert not same_question(a, spec("volume", rho=0.2))
    assert not same_question(
        a, report("volume").build(period=year_period(2024), rho=0.1, mode=Mode.INDEPENDENT)
    )
    may = datetime(2025, 5, 2, tzinfo=UTC)
    assert within_period(may, {"2025"}, NOW) and not within_period(may, {"2026"}, NOW)
    assert within_period(may, {"2025-Q2"}, NOW) and not within_period(may, {"2025-Q3"}, NOW)
    assert within_period(may, {"2025-05"}, NOW) and not within_period(may, {"2025-06"}, NOW)
    assert within_period(may, set(), NOW)  # no node reported: the calendar year of now
    assert not within_period(may.replace(year=2024), set(), NOW)


@pytest.mark.anyio
async def test_the_plan_route_asks_nothing_and_names_the_role(tmp_path: Path) -> None:
    rows = [visits(3), visits(4)]
    async with federation(tmp_path, rows) as fed:
        body = {"recipe": "standard-2025"}
        response = await fed.client.post(
            "/v1/releases/plan", json=body, headers=fed.as_(fed.analyst)
        )
        assert response.status_code == 200, response.text
        planned = ReleasePlan.model_validate(response.json())
        assert (planned.role, planned.may_publish) == ("analyst", False)
        assert "publishing needs an admin token" in planned.problems[0]
        assert [r.report for r in planned.reports] == [
            "volume",
            "reach_age",
            "origin_province",
            "segment_profile",
        ]
        unknown = await fed.client.post(
            "/v1/releases/plan",
            json={**body, "asked": {"revenue": "r-1"}},
            headers=fed.as_(fed.admin),
        )
        assert_problem(unknown, 422, "recipe_invalid")
        rounds = await fed.client.get("/v1/rounds", headers=fed.as_(fed.analyst))
        assert rounds.json() == []
