"""A node and the aggregator's pre-check judge a query against the node's policy alike
(protocol/policy.py): for every rule, the node refuses exactly when the aggregator would refuse
early, with the same reason. Fields an older node does not report are not judged by the
aggregator; the node still judges them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from aggregator.rounds.admission import precheck
from aggregator.storage.models import Node
from node.services.policy import check_policy, policy_of
from node.settings import NodeSettings
from protocol.catalogue import CATALOGUE_VERSION
from protocol.messages import BudgetStatus, NodeReport, PolicySummary, RefusalReason
from protocol.policy import Rule, Violation, violation
from protocol.query import Bounds, Mechanism, Mode, Privacy, QuerySpec
from protocol.reports import REPORTS, year_period
from tests.aggregator.test_pooled import audience
from tests.fedkit import assert_problem, federation
from tests.nodekit import make_spec

SECURE = Mode.SECURE
# (node settings, query, secure threshold, the reason both give or None)
CASES: list[tuple[dict[str, Any], dict[str, Any], int | None, RefusalReason | None]] = [
    ({}, {}, None, None),
    ({"secure_answers": False}, {"mode": SECURE}, 3, RefusalReason.POLICY_MODE),
    ({"secure_answers": False}, {}, None, None),  # independent rounds are still answered
    (
        {"allowed_dimensions": ["month"]},
        {"group_by": ("artform",)},
        None,
        RefusalReason.POLICY_DIMENSION,
    ),
    (
        {"allowed_dimensions": ["month"]},
        {"group_by": ("month",), "filters": {"channel": ("online",)}},
        None,
        RefusalReason.POLICY_DIMENSION,
    ),
    ({"allowed_dimensions": ["month", "channel"]}, {"group_by": ("month",)}, None, None),
    # 12 months and "unknown": 13 cells
    ({"max_cells": 12}, {"group_by": ("month",)}, None, RefusalReason.POLICY_CELLS),
    ({"max_cells": 13}, {"group_by": ("month",)}, None, None),
    (
        {"max_visits_per_person": 5},
        {"bounds": Bounds(max_visits_per_person=6)},
        None,
        RefusalReason.POLICY_BOUNDS,
    ),
    (
        {"max_visits_per_person": 5},
        {"bounds": Bounds(max_visits_per_person=6), "mode": SECURE},
        3,
        RefusalReason.POLICY_BOUNDS,
    ),
    ({"max_visits_per_person": 6}, {"bounds": Bounds(max_visits_per_person=6)}, None, None),
    ({"max_rho_per_query": 0.2}, {"rho": 0.21}, None, RefusalReason.POLICY_COST),
    ({"max_rho_per_query": 0.2}, {"rho": 0.2}, None, None),
    (
        {"max_rho_per_query": 0.2},
        {"privacy": Privacy(mechanism=Mechanism.LAPLACE, epsilon=0.7)},  # ρ = 0.245
        None,
        RefusalReason.POLICY_COST,
    ),
    ({"secure_max_worst_rho": 0.01}, {"mode": SECURE}, 3, RefusalReason.POLICY_SECURE_WORST_CASE),
    ({"secure_max_worst_rho": 10.0}, {"mode": SECURE}, 3, None),
    # Several rules broken: both name the first, in the order of protocol.policy.Rule.
    (
        {"max_cells": 11, "max_rho_per_query": 0.01, "allowed_dimensions": ["month"]},
        {"group_by": ("month",), "filters": {"artform": ("theatre",)}, "rho": 0.05},
        None,
        RefusalReason.POLICY_DIMENSION,
    ),
    (
        {"max_cells": 11, "max_visits_per_person": 5, "max_rho_per_query": 0.01},
        {"group_by": ("month",), "bounds": Bounds(max_visits_per_person=6)},
        None,
        RefusalReason.POLICY_CELLS,
    ),
]


def settings_of(tmp_path: Path, **overrides: Any) -> NodeSettings:
    return NodeSettings(_env_file=None, home=tmp_path, **overrides)


def spec_of(**fields: Any) -> QuerySpec:
    return make_spec("q-policy", **fields)


def aggregator_node(report: dict[str, Any]) -> Node:
    """The aggregator's row of a node whose last signed report is ``report`` (its JSON)."""
    return Node(id="n1", institution="Museum", report=json.dumps(report))


def report_of(policy: PolicySummary) -> dict[str, Any]:
    report = NodeReport(
        institution="Museum",
        catalogue_version=CATALOGUE_VERSION,
        budget=BudgetStatus(period="2025", cap_rho=1.0, spent_rho=0.0),
        policy=policy,
    )
    return report.model_dump(mode="json")


@pytest.mark.parametrize(("settings_", "spec_fields", "threshold", "reason"), CASES)
def test_node_and_aggregator_agree_on_every_rule(
    tmp_path: Path,
    settings_: dict[str, Any],
    spec_fields: dict[str, Any],
    threshold: int | None,
    reason: RefusalReason | None,
) -> None:
    settings = settings_of(tmp_path, **settings_)
    spec = spec_of(**spec_fields)
    refusal = check_policy(spec, settings, threshold)
    early = precheck(spec, aggregator_node(report_of(policy_of(settings))), {}, threshold)
    assert (refusal.reason if refusal is not None else None) is reason
    assert early == (reason.value if reason is not None else None)


def test_every_rule_maps_to_a_policy_refusal_with_dutch_and_english_text() -> None:
    for rule in Rule:
        found = Violation(rule, "a", "b", 3)
        assert found.reason.value.startswith("policy_")
        dutch, english = found.text("nl"), found.text("en")
        assert dutch and english and dutch != english
        assert "{" not in dutch + english


def test_the_refusal_message_says_what_the_query_asks_and_what_the_node_allows(
    tmp_path: Path,
) -> None:
    settings = settings_of(tmp_path, max_visits_per_person=5)
    spec = spec_of(bounds=Bounds(max_visits_per_person=6))
    found = violation(spec, policy_of(settings))
    assert found is not None and found.rule is Rule.VISITS
    refusal = check_policy(spec, settings)
    assert refusal is not None
    assert refusal.message == "max_visits_per_person is 6; this node allows at most 5"
    assert found.text("nl") == "max_visits_per_person is 6; deze node staat hoogstens 5 toe"


@pytest.mark.parametrize(
    ("dropped", "settings_", "spec_fields", "threshold", "reason"),
    [
        (
            "max_visits_per_person",
            {"max_visits_per_person": 5},
            {"bounds": Bounds(max_visits_per_person=6)},
            None,
            RefusalReason.POLICY_BOUNDS,
        ),
        (
            "secure_max_worst_rho",
            {"secure_max_worst_rho": 0.01},
            {"mode": SECURE},
            3,
            RefusalReason.POLICY_SECURE_WORST_CASE,
        ),
        (
            "secure_max_worst_rho",
            {"secure_answers": False},
            {"mode": SECURE},
            3,
            RefusalReason.POLICY_MODE,
        ),
    ],
)
def test_an_older_node_is_asked_when_it_does_not_report_a_rule_and_refuses_itself(
    tmp_path: Path,
    dropped: str,
    settings_: dict[str, Any],
    spec_fields: dict[str, Any],
    threshold: int | None,
    reason: RefusalReason,
) -> None:
    settings = settings_of(tmp_path, **settings_)
    spec = spec_of(**spec_fields)
    report = report_of(policy_of(settings))
    assert precheck(spec, aggregator_node(report), {}, threshold) == reason.value
    del report["policy"][dropped]  # what a node of the previous release reports
    assert precheck(spec, aggregator_node(report), {}, threshold) is None
    refusal = check_policy(spec, settings, threshold)
    assert refusal is not None and refusal.reason is reason


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_aggregator_refuses_early_a_question_above_a_nodes_visit_limit(
    tmp_path: Path,
) -> None:
    """End to end: the node's poll carries its max_visits_per_person, and a round whose
    bounds exceed it is refused before anything is sent."""
    spec = REPORTS["volume"].build(period=year_period(2025), rho=0.1, mode=Mode.INDEPENDENT)
    wide = spec.model_copy(update={"bounds": Bounds(max_visits_per_person=13)})
    rows = [audience(i, 10, seed=i) for i in range(2)]
    async with federation(tmp_path, rows, node_settings={"max_visits_per_person": 12}) as fed:
        headers = fed.as_(fed.analyst)
        with anyio.fail_after(30):  # real seconds: only guards against a hanging test
            while any(
                n["budget"] is None
                for n in (await fed.client.get("/v1/nodes", headers=headers)).json()
            ):
                await anyio.sleep(0.02)
        body = {"spec": wide.model_dump(mode="json")}
        response = await fed.client.post("/v1/rounds", json=body, headers=headers)
        problem = assert_problem(response, 409, "would_be_refused")
        assert {n["reason"] for n in problem["nodes"]} == {"policy_bounds_not_allowed"}
        assert len(problem["nodes"]) == 2
        listed = await fed.client.get("/v1/rounds", headers=headers)
        assert listed.json() == []
