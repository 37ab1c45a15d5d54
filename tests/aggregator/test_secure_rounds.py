"""Secure rounds end to end, in process: exactness, dropouts at every phase, what the aggregator
holds, malformed shares and a round that falls below its threshold.

Nodes are real node apps (their connectors long-poll the aggregator app through an in-process
transport). A dropout is a node whose connector computes its phase message but never delivers
it, which is what a node that vanishes at that moment looks like to everyone else. The
federation's clock is a ManualClock: a phase ends at its deadline only when the test moves time
there (``fed.expire``), after every node that stays in the round has answered it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats
from sqlalchemy import create_engine, inspect, text

from node.connector import Connector
from node.services.aggregate import run_aggregate
from node.storage.db import make_engine, make_sessionmaker, upgrade
from protocol import secagg
from protocol.messages import Phase, SecAggMasked, SecAggShares
from protocol.query import Measure, Mode
from protocol.results import NodeStatus, RoundResult, RoundState
from protocol.signing import SigningKey, sign
from tests.aggregator.test_pooled import audience
from tests.factories import write_rows
from tests.fedkit import Federation, federation

pytestmark = pytest.mark.anyio

EXACT = {
    "agg_settings": {"unsafe_accept_exact_answers": True},
    "node_settings": {"unsafe_disable_noise": True},
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def connector(fed: Federation, i: int) -> Connector:
    conn = fed.node_apps[i].state.node.connector
    assert isinstance(conn, Connector)
    return conn


def drop_at(fed: Federation, i: int, phase: Phase) -> None:
    """Node ``i`` vanishes at ``phase``: it computes its message but never delivers it."""
    conn = connector(fed, i)
    deliver = conn._deliver

    async def maybe(task: Any, body: bytes) -> None:
        if task.phase is phase:
            return
        await deliver(task, body)

    conn._deliver = maybe  # type: ignore[method-assign]


def tamper(fed: Federation, i: int, phase: Phase, change: Callable[[bytes], bytes]) -> None:
    conn = connector(fed, i)
    deliver = conn._deliver

    async def altered(task: Any, body: bytes) -> None:
        await deliver(task, change(body) if task.phase is phase else body)

    conn._deliver = altered  # type: ignore[method-assign]


def pooled(tmp_path: Path, rows: list[Any], result: RoundResult) -> dict[Measure, list[int]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'pooled.db'}")
    try:
        upgrade(engine)
        write_rows(engine, rows)
        with make_sessionmaker(engine)() as session:
            exact = run_aggregate(session, result.spec)
    finally:
        engine.dispose()
    return {m: list(v) for m, v in exact.items()}


def assert_equals_pooled(
    tmp_path: Path, node_rows: list[list[Any]], included: list[int], result: RoundResult
) -> None:
    rows = [row for i in included for row in node_rows[i]]
    exact = pooled(tmp_path, rows, result)
    for measure in result.spec.measures:
        assert list(result.measure(measure).estimates) == exact[measure], measure


async def test_secure_round_with_noise_off_equals_the_pooled_computation(tmp_path: Path) -> None:
    node_rows = [audience(i, 40 + 10 * i, seed=i) for i in range(4)]
    async with federation(tmp_path, node_rows, **EXACT) as fed:
        created = await fed.ask(report={"name": "standard", "year": 2025, "rho": 0.1})
        assert created.mode is Mode.SECURE and created.threshold == 3  # ⌈2·4/3⌉
        result = await fed.wait(created.round_id)
    assert result.state is RoundState.CLOSED and result.failure is None
    assert result.coverage.answered == 4 and result.noise is False and result.quorum_met
    assert_equals_pooled(tmp_path, node_rows, [0, 1, 2, 3], result)
    assert result.measure(Measure.VISITS).standard_errors[0] == 0.0


PHASES = [Phase.ANNOUNCE, Phase.KEYS, Phase.SHARES, Phase.MASK, Phase.UNMASK]


@pytest.mark.parametrize("phase", PHASES, ids=[p.value for p in PHASES])
@pytest.mark.parametrize("dropouts", [1, 2])
async def test_dropouts_at_each_phase_still_sum_exactly(
    tmp_path: Path, phase: Phase, dropouts: int
) -> None:
    """N = 5, t = 3: up to N − t = 2 nodes vanish at one phase; the sum is still exact."""
    node_rows = [audience(i, 25 + 5 * i, seed=10 + i) for i in range(5)]
    gone = list(range(5 - dropouts, 5))
    async with federation(tmp_path, node_rows, **EXACT) as fed:
        for i in gone:
            drop_at(fed, i, phase)
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.1}, threshold=3, deadline_seconds=8
        )
        # The others have acted in this phase; the dropouts stay silent until its deadline.
        await fed.expire(created.round_id, phase=phase, silent=dropouts)
        result = await fed.wait(created.round_id)
    assert result.state is RoundState.CLOSED and result.failure is None, result.failure
    by_institution = {n.institution: n for n in result.coverage.nodes}
    # Vanishing while unmasking is too late to leave: that vector is in the sum already.
    included = list(range(5)) if phase is Phase.UNMASK else list(range(5 - dropouts))
    assert result.coverage.answered == len(included)
    for i in gone:
        outcome = by_institution[f"Instelling {i}"]
        if phase is Phase.UNMASK:
            assert outcome.status is NodeStatus.ANSWERED
        else:
            assert outcome.status is NodeStatus.TIMED_OUT
            expected = "dropped_after_sharing" if phase is Phase.MASK else "dropped_before_masking"
            assert outcome.reason == expected
    assert_equals_pooled(tmp_path, node_rows, included, result)


async def test_below_the_threshold_the_round_fails_cleanly(tmp_path: Path) -> None:
    node_rows = [audience(i, 20, seed=20 + i) for i in range(3)]
    async with federation(tmp_path, node_rows, **EXACT) as fed:
        drop_at(fed, 2, Phase.MASK)
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.1}, threshold=3, deadline_seconds=6
        )
        await fed.expire(created.round_id, phase=Phase.MASK, silent=1)
        # Failing now would be certain, but the silent node may only be slow: the phase waits
        # longer, until the round's own deadline.
        row = await fed.waits_longer(created.round_id)
        assert row.phase == Phase.MASK.value
        fed.clock.advance_to(row.deadline)
        result = await fed.wait(created.round_id)
    assert result.state is RoundState.CLOSED
    assert result.failure == "below_threshold_mask"
    assert result.measures == () and result.quorum_met is False
    assert {n.reason for n in result.coverage.nodes} == {"round_failed", "dropped_after_sharing"}


def hold_at(fed: Federation, i: int, phase: Phase) -> list[Callable[[], Any]]:
    """Node ``i`` is slow at ``phase``: it computes its message, which is delivered only when the
    test calls what the returned list holds (a node on a busy machine, late but not gone)."""
    conn = connector(fed, i)
    deliver = conn._deliver
    held: list[Callable[[], Any]] = []

    async def later(task: Any, body: bytes) -> None:
        if task.phase is phase:
            held.append(lambda: deliver(task, body))
            return
        await deliver(task, body)

    conn._deliver = later  # type: ignore[method-assign]
    return held


async def test_a_slow_majority_is_waited_for_instead_of_failing_the_round(tmp_path: Path) -> None:
    """N = 5, t = 3: three nodes are late with their shares (a machine under load). At the phase's
    deadline only two have answered; the round waits for the others and then sums exactly."""
    node_rows = [audience(i, 25 + 5 * i, seed=40 + i) for i in range(5)]
    async with federation(tmp_path, node_rows, **EXACT) as fed:
        held = [hold_at(fed, i, Phase.SHARES) for i in (2, 3, 4)]
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.1}, threshold=3, deadline_seconds=60
        )
        first = await fed.expire(created.round_id, phase=Phase.SHARES, silent=3)
        row = await fed.waits_longer(first)
        assert row.phase == Phase.SHARES.value
        for slow in held:
            assert len(slow) == 1
            await slow[0]()
        result = await fed.wait(created.round_id)
    assert result.state is RoundState.CLOSED and result.failure is None, result.failure
    assert result.coverage.answered == 5
    assert_equals_pooled(tmp_path, node_rows, list(range(5)), result)


async def test_the_aggregator_holds_no_unmasked_per_node_vector(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Noise off makes per-node vectors recognisable: none may appear in the aggregator's
    database or logs, and the masked vectors it holds look uniformly random."""
    caplog.set_level(logging.DEBUG)
    node_rows = [audience(i, 60, seed=30 + i) for i in range(3)]
    async with federation(tmp_path, node_rows, **EXACT) as fed:
        created = await fed.ask(report={"name": "standard", "year": 2025, "rho": 0.1})
        result = await fed.wait(created.round_id)
        db_url = fed.settings.database_url
    assert result.failure is None and result.coverage.answered == 3

    per_node = []
    for i, rows in enumerate(node_rows):
        exact = pooled(tmp_path / f"n{i}", rows, result)
        values = [v for m in result.spec.measures for v in exact[m]]
        per_node.append(values)
    needles = set()
    for values in per_node:
        needles.add(json.dumps(values))
        needles.add(json.dumps(values, separators=(",", ":")))
        needles.add(secagg.to_text(secagg.encode(values)))
    haystack = [record.getMessage() for record in caplog.records]
    engine = create_engine(db_url.replace("+aiosqlite", ""))
    masked = []
    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                for value in row:
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "replace")
                    haystack.append(str(value))
        bodies = connection.execute(text("SELECT body FROM task")).scalars().all()
    engine.dispose()
    for needle in needles:
        assert not any(needle in hay for hay in haystack)
    for body in bodies:
        message = SecAggMasked.model_validate(json.loads(body)["payload"])
        vector = secagg.from_text(message.vector, message.length)
        assert secagg.decode(vector) not in per_node
        masked.append(vector)
    # Uniformity: the top 4 bits of every masked entry, pooled over the nodes (χ², 16 bins).
    top = np.concatenate(masked) >> np.uint64(60)
    counts = np.bincount(top.astype(np.int64), minlength=16)
    assert stats.chisquare(counts).pvalue > 1e-6, counts
    # Without masks the same entries would sit in bin 0 (small non-negative counts).
    assert counts[0] < 0.25 * counts.sum()


async def test_a_malformed_share_is_excluded_and_reported(tmp_path: Path) -> None:
    node_rows = [audience(i, 30, seed=40 + i) for i in range(5)]

    def wrong_length(body: bytes) -> bytes:
        document = json.loads(body)
        sealed = document["payload"]["sealed"]
        first = sorted(sealed)[0]
        sealed[first] = sealed[first][:-8]
        return json.dumps(document).encode()  # the signature no longer matches: rejected

    async with federation(tmp_path, node_rows, **EXACT) as fed:
        tamper(fed, 4, Phase.SHARES, wrong_length)
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.1}, threshold=3, deadline_seconds=8
        )
        await fed.expire(created.round_id, phase=Phase.SHARES, silent=1)
        result = await fed.wait(created.round_id)
    assert result.failure is None
    node4 = next(n for n in result.coverage.nodes if n.institution == "Instelling 4")
    assert node4.status is NodeStatus.TIMED_OUT and node4.reason == "dropped_before_masking"
    assert_equals_pooled(tmp_path, node_rows, [0, 1, 2, 3], result)


async def test_a_signed_share_of_the_wrong_length_is_invalid(tmp_path: Path) -> None:
    node_rows = [audience(i, 30, seed=50 + i) for i in range(5)]
    async with federation(tmp_path, node_rows, **EXACT) as fed:
        key: SigningKey = fed.node_apps[4].state.node.key

        def resigned(body: bytes) -> bytes:
            payload = json.loads(body)["payload"]
            first = sorted(payload["sealed"])[0]
            payload["sealed"][first] = payload["sealed"][first][:-8]
            return sign("secagg_shares", payload, key).model_dump_json().encode()

        tamper(fed, 4, Phase.SHARES, resigned)
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.1}, threshold=3, deadline_seconds=8
        )
        result = await fed.wait(created.round_id)
    node4 = next(n for n in result.coverage.nodes if n.institution == "Instelling 4")
    assert node4.status is NodeStatus.INVALID and node4.reason == "malformed_shares"
    assert result.failure is None
    assert_equals_pooled(tmp_path, node_rows, [0, 1, 2, 3], result)


async def test_shares_that_do_not_open_get_their_sender_excluded(tmp_path: Path) -> None:
    """Right length, signed, but garbage inside: only the recipients can tell. They say so in
    their masked vectors; the sender is marked invalid and its mask key reconstructed."""
    node_rows = [audience(i, 30, seed=60 + i) for i in range(5)]
    async with federation(tmp_path, node_rows, **EXACT) as fed:
        key: SigningKey = fed.node_apps[4].state.node.key

        def garbled(body: bytes) -> bytes:
            payload = SecAggShares.model_validate(json.loads(body)["payload"])
            first = sorted(payload.sealed)[0]
            text_ = payload.sealed[first]
            flipped = text_[:30] + ("A" if text_[30] != "A" else "B") + text_[31:]
            sealed = {**payload.sealed, first: flipped}
            document = payload.model_copy(update={"sealed": sealed}).model_dump(mode="json")
            return sign("secagg_shares", document, key).model_dump_json().encode()

        tamper(fed, 4, Phase.SHARES, garbled)
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.1}, threshold=3, deadline_seconds=8
        )
        result = await fed.wait(created.round_id)
    assert result.failure is None, result.failure
    node4 = next(n for n in result.coverage.nodes if n.institution == "Instelling 4")
    assert node4.status is NodeStatus.INVALID and node4.reason == "malformed_shares"
    assert_equals_pooled(tmp_path, node_rows, [0, 1, 2, 3], result)


async def test_noise_on_secure_round_reports_the_sum_of_the_shares(tmp_path: Path) -> None:
    node_rows = [audience(i, 50, seed=70 + i) for i in range(4)]
    async with federation(tmp_path, node_rows) as fed:
        created = await fed.ask(report={"name": "volume", "year": 2025, "rho": 0.1})
        result = await fed.wait(created.round_id)
    assert result.failure is None and result.noise is True and result.coverage.answered == 4
    exact = pooled(tmp_path, [r for rows in node_rows for r in rows], result)
    from node.privacy.distributed import secure_calibrations

    calibrations = secure_calibrations(result.spec, 3)
    for measure in result.spec.measures:
        estimate = result.measure(measure)
        se = math.sqrt(4) * calibrations[measure].noise_sd
        assert estimate.standard_errors[0] == pytest.approx(se)
        errors = np.array(estimate.estimates) - np.array(exact[measure])
        assert np.all(np.abs(errors) < 6 * se)  # P(any of ≤ 24 cells beyond 6 SE) < 1e-7


async def test_a_refusal_while_unmasking_still_sums_exactly(tmp_path: Path) -> None:
    """A node that restarts after masking has lost its secrets and refuses to unmask: its
    vector is in the sum already, and the other survivors' shares make up for its own."""
    node_rows = [audience(i, 30, seed=80 + i) for i in range(5)]
    async with federation(tmp_path, node_rows, **EXACT) as fed:
        key: SigningKey = fed.node_apps[4].state.node.key

        def refuse(body: bytes) -> bytes:
            query_id = json.loads(body)["payload"]["query_id"]
            refusal = {"query_id": query_id, "reason": "secure_protocol_violation", "message": "x"}
            return sign("refusal", refusal, key).model_dump_json().encode()

        tamper(fed, 4, Phase.UNMASK, refuse)
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.1}, threshold=3, deadline_seconds=8
        )
        result = await fed.wait(created.round_id)
    assert result.failure is None, result.failure
    assert result.coverage.answered == 5
    assert_equals_pooled(tmp_path, node_rows, [0, 1, 2, 3, 4], result)


async def test_a_refusal_for_another_query_is_not_recorded(tmp_path: Path) -> None:
    node_rows = [audience(i, 20, seed=90 + i) for i in range(3)]
    async with federation(tmp_path, node_rows, **EXACT) as fed:
        key: SigningKey = fed.node_apps[2].state.node.key

        def foreign(body: bytes) -> bytes:
            refusal = {"query_id": "pd-another-query", "reason": "budget_exhausted", "message": "x"}
            return sign("refusal", refusal, key).model_dump_json().encode()

        tamper(fed, 2, Phase.KEYS, foreign)
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.1}, threshold=2, deadline_seconds=6
        )
        await fed.expire(created.round_id, phase=Phase.KEYS, silent=1)  # its refusal is void
        result = await fed.wait(created.round_id)
    node2 = next(n for n in result.coverage.nodes if n.institution == "Instelling 2")
    assert node2.status is NodeStatus.TIMED_OUT and node2.reason == "dropped_before_masking"
    assert result.failure is None
    assert_equals_pooled(tmp_path, node_rows, [0, 1], result)


async def test_a_masked_vector_claiming_the_wrong_noise_share_is_invalid(tmp_path: Path) -> None:
    """The aggregator recomputes each node's noise share from the spec and the threshold
    (protocol.calibration.expected_share_noise): a node that claims more or less noise, or none
    while saying it added some, is excluded, and the round still sums the others."""
    node_rows = [audience(i, 30, seed=90 + i) for i in range(5)]
    async with federation(tmp_path, node_rows) as fed:
        for i, change in ((3, {"noise_sd": 1e300}), (4, {"noise_sd": 0.0, "scale": 0.0})):
            key: SigningKey = fed.node_apps[i].state.node.key

            def claimed(body: bytes, key: SigningKey = key, change: Any = change) -> bytes:
                payload = json.loads(body)["payload"]
                for measure in payload["measures"]:
                    measure.update(change)
                return sign("secagg_masked", payload, key).model_dump_json().encode()

            tamper(fed, i, Phase.MASK, claimed)
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.1}, threshold=3, deadline_seconds=8
        )
        response = await fed.client.get(
            f"/v1/rounds/{created.round_id}", params={"wait": 0}, headers=fed.as_(fed.analyst)
        )
        assert response.status_code == 200
        result = await fed.wait(created.round_id)
    assert result.failure is None, result.failure
    for name in ("Instelling 3", "Instelling 4"):
        node = next(n for n in result.coverage.nodes if n.institution == name)
        assert node.status is NodeStatus.INVALID and node.reason == "wrong_noise", node
    assert result.coverage.answered == 3
    from node.privacy.distributed import secure_calibrations

    calibrations = secure_calibrations(result.spec, 3)
    for measure in result.spec.measures:  # the honest three shares' noise, nothing else
        se = math.sqrt(3) * calibrations[measure].noise_sd
        assert result.measure(measure).standard_errors[0] == pytest.approx(se)


async def test_a_sum_outside_the_plausible_range_fails_the_round(tmp_path: Path) -> None:
    """A node adds 2**60 to its masked vector (its signature is genuine; nobody can tell a
    masked vector from noise): the sum is implausible, and the round fails rather than release
    a figure no release could carry."""
    node_rows = [audience(i, 30, seed=110 + i) for i in range(4)]
    async with federation(tmp_path, node_rows, **EXACT) as fed:
        key: SigningKey = fed.node_apps[3].state.node.key

        def inflated(body: bytes) -> bytes:
            payload = json.loads(body)["payload"]
            vector = secagg.from_text(payload["vector"], payload["length"]).copy()
            vector[0] = np.uint64((int(vector[0]) + 2**60) % 2**64)
            payload["vector"] = secagg.to_text(vector)
            return sign("secagg_masked", payload, key).model_dump_json().encode()

        tamper(fed, 3, Phase.MASK, inflated)
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.1}, threshold=3, deadline_seconds=8
        )
        result = await fed.wait(created.round_id)
    assert result.state is RoundState.CLOSED
    assert result.failure == "implausible_sum"
    assert result.measures == ()
