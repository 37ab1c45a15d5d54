"""The node's side of a secure round, driven by a test that plays the aggregator — honest, and
lying about who dropped out. Four real nodes (own databases, own keys, own ledgers)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from node.services import ledger
from node.services.secure import SecureParty
from node.storage.db import make_engine
from node.storage.models import LedgerEntry
from protocol import secagg, secgraph
from protocol.messages import (
    REFUSAL,
    Phase,
    QueryRequest,
    RefusalReason,
    SecAggKeys,
    SecAggMasked,
    SecAggReveal,
    SecAggShares,
    Task,
)
from protocol.query import Mode, QuerySpec
from protocol.signing import public_key_to_text
from tests.factories import Row, write_rows
from tests.nodekit import make_node, make_spec, open_answerer

ROUND = "round-0000-secure-test"
AGG_KEY = "0123456789abcdef"


def rows(node: int) -> list[Row]:
    from datetime import date

    return [
        Row(person=node * 1000 + p, event_date=date(2025, 3, 1 + p % 20), artform="theatre")
        for p in range(5 + node)
    ]


@pytest.fixture
def parties(tmp_path: Path) -> Iterator[list[SecureParty]]:
    with ExitStack() as stack:
        out = []
        for i in range(4):
            settings, _ = make_node(
                tmp_path / f"n{i}",
                f"sqlite:///{tmp_path / f'n{i}' / 'node.db'}",
                institution=f"Node {i}",
                unsafe_disable_noise=True,
            )
            engine = make_engine(settings.database_url)
            write_rows(engine, rows(i), ref_offset=i * 100)
            engine.dispose()
            answerer = stack.enter_context(open_answerer(settings))
            out.append(SecureParty(answerer))
        yield out


def spec() -> QuerySpec:
    return make_spec(f"pd-{ROUND}", rho=0.1).model_copy(update={"mode": Mode.SECURE})


def task(party: SecureParty, phase: Phase, **extra: Any) -> Task:
    return Task(
        task_id="task-" + party.key.key_id,
        round_id=ROUND,
        node_key_id=party.key.key_id,
        deadline=datetime.now(UTC) + timedelta(minutes=5),
        request=QueryRequest(spec=spec(), analyst="analist"),
        phase=phase,
        threshold=3,
        **extra,
    )


def payload(body: bytes) -> dict[str, Any]:
    document = json.loads(body)
    assert document["type"] != REFUSAL, document["payload"]
    result: dict[str, Any] = document["payload"]
    return result


def ring(keys: dict[str, Any]) -> list[str]:
    """U1 in ring order, as the aggregator derives it from the signed keys messages."""
    publics = {}
    for key_id, body in keys.items():
        document = json.loads(body) if isinstance(body, bytes) else body
        publics[key_id] = (document["payload"]["c_public"], document["payload"]["s_public"])
    return secgraph.ring_order(ROUND, publics)


def run_to_mask(parties: list[SecureParty]) -> tuple[dict[str, Any], dict[str, Any]]:
    """KEYS, SHARES and MASK for all four; returns (shares by sender, masked by node)."""
    keys = {p.key.key_id: p.handle(task(p, Phase.KEYS), AGG_KEY) for p in parties}
    peers = [
        {
            "node_key_id": p.key.key_id,
            "public_key": public_key_to_text(p.key.public),
            "keys": json.loads(keys[p.key.key_id]),
        }
        for p in parties
    ]
    shares = {
        p.key.key_id: SecAggShares.model_validate(
            payload(
                p.handle(task(p, Phase.SHARES, setup={"peers": peers, "ring": ring(keys)}), AGG_KEY)
            )
        )
        for p in parties
    }
    masked = {}
    for p in parties:
        me = p.key.key_id
        sealed = {s: m.sealed[me] for s, m in shares.items() if s != me}
        body = p.handle(task(p, Phase.MASK, mask={"sealed": sealed}), AGG_KEY)
        masked[me] = SecAggMasked.model_validate(payload(body))
    return shares, masked


def _sessions(parties: list[SecureParty]) -> dict[str, Any]:
    return {p.key.key_id: p._sessions[ROUND] for p in parties}


def refusal_reason(body: bytes) -> str:
    document = json.loads(body)
    assert document["type"] == REFUSAL
    return str(document["payload"]["reason"])


def test_honest_round_debits_each_ledger_once_with_the_assumption(
    parties: list[SecureParty],
) -> None:
    _, masked = run_to_mask(parties)
    for p in parties:
        with p.answerer.reader() as session:
            entry = session.query(LedgerEntry).one()
            assert entry.mode == "secure" and entry.threshold == 3
            assert entry.rho == pytest.approx(0.1)
            assert entry.rho_worst is not None and entry.rho_worst > entry.rho
            assert ledger.spent_units(session, entry.period) == ledger.to_units(0.1)
        # A redelivered MASK task returns the stored bytes and spends nothing more.
        again = p.handle(task(p, Phase.MASK, mask={"sealed": {}}), AGG_KEY)
        assert SecAggMasked.model_validate(payload(again)) == masked[p.key.key_id]


def test_a_lying_aggregator_cannot_unmask_a_live_node(parties: list[SecureParty]) -> None:
    shares, masked = run_to_mask(parties)
    victim = parties[0].key.key_id
    order = ring({k: json.loads(v.keys_body) for k, v in _sessions(parties).items()})
    others = parties[1:]
    # The lie: the victim "dropped out", though its masked vector arrived.
    liars_survivors = [p.key.key_id for p in others]
    reveals = [
        SecAggReveal.model_validate(
            payload(p.handle(task(p, Phase.UNMASK, unmask={"survivors": liars_survivors}), AGG_KEY))
        )
        for p in others
    ]
    assert all(victim in r.s_shares and victim not in r.b_shares for r in reveals)
    # Now the aggregator asks again, with the victim alive, for its self-mask shares: refused.
    honest = [p.key.key_id for p in parties]
    for p in others:
        body = p.handle(task(p, Phase.UNMASK, unmask={"survivors": honest}), AGG_KEY)
        assert refusal_reason(body) == RefusalReason.SECURE_PROTOCOL.value
    # With s it can strip the victim's pair masks, but the self-mask still hides the vector.
    graph = secgraph.Ring.of(order, 3)  # four nodes: the complete graph, threshold 3
    assert graph.shape.complete and graph.shape.threshold == 3
    points = [(graph.x(victim, r.node_key_id), int(r.s_shares[victim])) for r in reveals]
    s_victim = secagg.private_from_bytes(
        secagg.combine([y for _, y in points], secagg.lagrange_weights([x for x, _ in points]))
    )
    keys = SecAggKeys.model_validate(
        payload(parties[0].handle(task(parties[0], Phase.KEYS), AGG_KEY))
    )
    assert secagg.public_text(s_victim) == keys.s_public  # the s reconstruction is real
    m = masked[victim]
    y = secagg.from_text(m.vector, m.length)
    for p in others:
        peer_keys = SecAggKeys.model_validate(payload(p.handle(task(p, Phase.KEYS), AGG_KEY)))
        seed = secagg.pair_seed(
            secagg.agree(s_victim, peer_keys.s_public), ROUND, victim, p.key.key_id
        )
        y = y - secagg.pair_mask(seed, m.length, victim, p.key.key_id)
    leaked = secagg.decode(y)
    assert max(abs(v) for v in leaked) > 2**40  # still uniformly masked, not the counts
    del shares


def test_a_threshold_below_a_majority_is_refused(parties: list[SecureParty]) -> None:
    keys = {}
    for p in parties:
        t = task(p, Phase.KEYS).model_copy(update={"threshold": 2})
        keys[p.key.key_id] = p.handle(t, AGG_KEY)
    peers = [
        {
            "node_key_id": p.key.key_id,
            "public_key": public_key_to_text(p.key.public),
            "keys": json.loads(keys[p.key.key_id]),
        }
        for p in parties
    ]
    p = parties[0]
    shares_task = task(p, Phase.SHARES, setup={"peers": peers, "ring": ring(keys)}).model_copy(
        update={"threshold": 2}
    )
    assert refusal_reason(p.handle(shares_task, AGG_KEY)) == RefusalReason.SECURE_PROTOCOL.value


def test_an_altered_peer_key_is_refused(parties: list[SecureParty]) -> None:
    keys = {p.key.key_id: json.loads(p.handle(task(p, Phase.KEYS), AGG_KEY)) for p in parties}
    victim = parties[1].key.key_id
    keys[victim]["payload"]["s_public"] = keys[parties[2].key.key_id]["payload"]["s_public"]
    peers = [
        {
            "node_key_id": p.key.key_id,
            "public_key": public_key_to_text(p.key.public),
            "keys": keys[p.key.key_id],
        }
        for p in parties
    ]
    setup = {"peers": peers, "ring": ring(keys)}
    body = parties[0].handle(task(parties[0], Phase.SHARES, setup=setup), AGG_KEY)
    assert refusal_reason(body) == RefusalReason.SECURE_PROTOCOL.value


def test_the_worst_case_limit_refuses_at_the_keys_phase(tmp_path: Path) -> None:
    settings, _ = make_node(
        tmp_path, f"sqlite:///{tmp_path / 'node.db'}", secure_max_worst_rho=0.15
    )
    with open_answerer(settings) as answerer:
        party = SecureParty(answerer)
        body = party.handle(task(party, Phase.KEYS), AGG_KEY)  # t = 3: worst ≈ 3·0.1
    assert refusal_reason(body) == RefusalReason.POLICY_SECURE_WORST_CASE.value


def test_phases_without_keys_are_refused(parties: list[SecureParty]) -> None:
    p = parties[0]
    body = p.handle(task(p, Phase.MASK, mask={"sealed": {}}), AGG_KEY)
    assert refusal_reason(body) == RefusalReason.SECURE_PROTOCOL.value
