"""The rounds' phase machines, pure: a table of (state, event) → (state, actions) per kind of
round, with no database, clock or network (aggregator/rounds/independent.py, securephases.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.rounds import independent, secure, securephases
from aggregator.rounds.machine import Action
from aggregator.rounds.securephases import PhaseEnd, Seat
from protocol import secgraph
from protocol.messages import Phase
from protocol.results import NodeStatus
from tests.nodekit import make_spec

A = Action
OPEN3 = independent.State(open=True, pending=3)
OPEN1 = independent.State(open=True, pending=1)
CLOSED = independent.State(open=False, pending=0)


def arrived(
    status: NodeStatus = NodeStatus.ANSWERED,
    stored: bytes | None = None,
    pending: bool = True,
    budget: bool = True,
) -> independent.Arrived:
    return independent.Arrived(status, b"answer", stored, pending, budget)


@pytest.mark.parametrize(
    ("state", "event", "after", "actions"),
    [
        (OPEN3, arrived(), replace(OPEN3, pending=2), (A.STORE, A.RECORD_BUDGET, A.NOTIFY)),
        (
            OPEN1,
            arrived(),
            CLOSED,
            (A.STORE, A.RECORD_BUDGET, A.CLOSE, A.NOTIFY),
        ),
        (
            OPEN3,
            arrived(NodeStatus.REFUSED, budget=False),
            replace(OPEN3, pending=2),
            (A.STORE, A.NOTIFY),
        ),
        (
            OPEN3,
            arrived(NodeStatus.INVALID, budget=False),
            replace(OPEN3, pending=2),
            (A.STORE, A.NOTIFY, A.REJECT_INVALID),
        ),
        (OPEN3, arrived(stored=b"answer"), OPEN3, (A.ACCEPT_RETRY,)),
        (OPEN3, arrived(stored=b"other"), OPEN3, (A.REJECT_ANSWERED,)),
        (CLOSED, arrived(stored=b"answer"), CLOSED, (A.ACCEPT_RETRY,)),
        (CLOSED, arrived(), CLOSED, (A.REJECT_CLOSED,)),
        (OPEN3, arrived(pending=False), OPEN3, (A.REJECT_CLOSED,)),
        (OPEN3, independent.Deadline(), CLOSED, (A.TIME_OUT, A.CLOSE, A.NOTIFY)),
        (CLOSED, independent.Deadline(), CLOSED, ()),
    ],
    ids=[
        "answer",
        "last answer closes",
        "refusal",
        "invalid is stored and reported",
        "identical retry",
        "second different answer",
        "retry after close",
        "too late",
        "timed-out task",
        "deadline",
        "deadline after close",
    ],
)
def test_independent_round(
    state: independent.State,
    event: independent.Event,
    after: independent.State,
    actions: tuple[Action, ...],
) -> None:
    assert independent.step(state, event) == (after, actions)


NOW = datetime(2026, 1, 1, tzinfo=UTC)
DEADLINE = NOW + timedelta(minutes=10)


def seat(n: int, phase: Phase | None = Phase.ANNOUNCE, **fields: object) -> Seat:
    base = Seat(f"t{n}", f"n{n}", f"k{n}", f"pk{n}", NodeStatus.PENDING, phase=phase)
    return replace(base, **fields)  # type: ignore[arg-type]


def secure_state(*seats: Seat, phase: Phase = Phase.ANNOUNCE, t: int = 2) -> securephases.State:
    return securephases.State(
        round_id="r",
        spec=make_spec(),
        threshold=t,
        deadline=DEADLINE,
        seats=seats,
        phase=phase,
        phase_deadline=NOW + timedelta(minutes=1),
    )


def keys(n: int) -> bytes:
    """A stored KEYS message of node n (its envelope's payload is what the ring order reads)."""
    c, s = public_keys(n)
    payload = {
        "round_id": "r",
        "query_id": "q",
        "query_hash": "h",
        "node_key_id": f"{n:016x}",
        "c_public": c,
        "s_public": s,
    }
    return json.dumps({"payload": payload}).encode()


def public_keys(n: int) -> tuple[str, str]:
    return f"c-public-key-of-node-{n:020d}", f"s-public-key-of-node-{n:020d}"


def ring(*ns: int) -> tuple[str, ...]:
    return tuple(secgraph.ring_order("r", {f"k{n}": public_keys(n) for n in ns}))


def accept(n: int, phase: Phase = Phase.ANNOUNCE, raw: bytes = b"m") -> securephases.Arrived:
    return securephases.Arrived(f"t{n}", phase, NodeStatus.PENDING, None, raw, NOW)


def test_an_acceptance_leaves_the_seat_waiting_for_the_next_phase() -> None:
    state = secure_state(seat(1), seat(2))
    after, actions = securephases.step(state, accept(1))
    assert actions == (A.STORE, A.NOTIFY)
    assert after.seats[0] == replace(seat(1), phase=None, received_at=NOW)
    assert after.seats[1] == seat(2) and after.phase is Phase.ANNOUNCE


def test_the_last_message_of_a_phase_ends_it_and_the_next_begins() -> None:
    state = secure_state(seat(1, phase=None), seat(2))
    after, actions = securephases.step(state, accept(2))
    assert actions == (A.STORE, A.PHASE_OVER)
    ended, more = securephases.step(after, PhaseEnd(NOW, all_in=True))
    assert more == (A.ADVANCE, A.NOTIFY)
    assert ended.phase is Phase.KEYS
    assert ended.phase_deadline == secure.phase_deadline(NOW, DEADLINE, Phase.KEYS)
    assert [s.phase for s in ended.seats] == [Phase.KEYS, Phase.KEYS]


def test_a_phase_end_before_its_deadline_with_nodes_waiting_does_nothing() -> None:
    state = secure_state(seat(1), seat(2))
    # A timer that fires before the phase's deadline only re-arms it.
    assert securephases.step(state, PhaseEnd(NOW)) == (state, (A.EXTEND,))
    assert securephases.step(state, PhaseEnd(NOW, all_in=True)) == (state, ())


@pytest.mark.parametrize(
    ("phase", "reason"),
    [
        (Phase.ANNOUNCE, secure.DROPPED_BEFORE_MASKING),
        (Phase.SHARES, secure.DROPPED_BEFORE_MASKING),
        (Phase.MASK, secure.DROPPED_AFTER_SHARING),
    ],
)
def test_at_the_deadline_silent_nodes_time_out_with_the_reason_of_their_phase(
    phase: Phase, reason: str
) -> None:
    keep = {"keys": b"k", "shares": b"s"}
    done = [seat(n, phase=None, **keep) for n in (1, 2)]
    state = secure_state(*done, seat(3, phase=phase, **keep), phase=phase)
    after, actions = securephases.step(state, PhaseEnd(DEADLINE))
    silent = after.seats[2]
    assert (silent.status, silent.reason, silent.phase) == (NodeStatus.TIMED_OUT, reason, None)
    if phase is Phase.MASK:  # nobody sent a masked vector in this table: too few go on
        assert actions == (A.CLOSE, A.NOTIFY) and after.failure == "below_threshold_mask"
    else:
        assert actions == (A.ADVANCE, A.NOTIFY)
        assert [s.phase for s in after.seats[:2]] == [secure.next_phase(phase)] * 2


def test_an_undelivered_task_times_out_as_not_delivered_and_approval_keeps_its_reason() -> None:
    state = secure_state(
        seat(1, phase=None),
        seat(2, phase=None),
        seat(3, delivered=False),
        seat(4, reason="awaiting_approval"),
    )
    after, _ = securephases.step(state, PhaseEnd(DEADLINE))
    assert [s.reason for s in after.seats[2:]] == ["not_delivered", "awaiting_approval"]


def test_the_keys_phase_sets_the_roster_of_who_sent_keys() -> None:
    state = secure_state(
        seat(2, phase=None, keys=keys(2)),
        seat(1, phase=None, keys=keys(1)),
        seat(3, phase=Phase.KEYS),
        phase=Phase.KEYS,
    )
    after, actions = securephases.step(state, PhaseEnd(DEADLINE))
    assert actions == (A.ADVANCE, A.NOTIFY)
    assert sorted(after.roster) == ["k1", "k2"] and after.roster == ring(1, 2)
    assert after.phase is Phase.SHARES


def test_fewer_than_t_fails_the_round_and_the_rest_count_as_answered() -> None:
    state = secure_state(seat(1, phase=None), seat(2), seat(3), t=2)
    after, actions = securephases.step(state, PhaseEnd(DEADLINE))
    assert actions == (A.CLOSE, A.NOTIFY)
    assert (after.open, after.phase, after.failure) == (False, None, "below_threshold_announce")
    assert [(s.status, s.reason) for s in after.seats] == [
        (NodeStatus.ANSWERED, "round_failed"),
        (NodeStatus.TIMED_OUT, secure.DROPPED_BEFORE_MASKING),
        (NodeStatus.TIMED_OUT, secure.DROPPED_BEFORE_MASKING),
    ]


@pytest.mark.parametrize(
    ("seat_", "state_phase", "event", "reply"),
    [
        (seat(1, phase=Phase.KEYS, keys=b"m"), Phase.KEYS, accept(1, Phase.KEYS), A.ACCEPT_RETRY),
        (seat(1, phase=None), Phase.ANNOUNCE, accept(1), A.ACCEPT_RETRY),
        (seat(1, phase=None), Phase.KEYS, accept(1, Phase.KEYS), A.REJECT_ANSWERED),
        (seat(1), Phase.KEYS, accept(1, Phase.ANNOUNCE), A.REJECT_CLOSED),
        (seat(1, status=NodeStatus.TIMED_OUT), Phase.ANNOUNCE, accept(1), A.REJECT_CLOSED),
    ],
    ids=["stored retry", "second acceptance", "second keys", "old phase", "timed out"],
)
def test_secure_replies_without_a_change(
    seat_: Seat, state_phase: Phase, event: securephases.Arrived, reply: Action
) -> None:
    state = secure_state(seat_, seat(2, phase=state_phase), phase=state_phase)
    assert securephases.step(state, event) == (state, (reply,))


def test_a_mask_message_records_the_budget_and_a_refusal_is_kept() -> None:
    state = secure_state(seat(1, phase=Phase.MASK), seat(2, phase=Phase.MASK), phase=Phase.MASK)
    after, actions = securephases.step(state, accept(1, Phase.MASK, b"masked"))
    assert actions == (A.STORE, A.RECORD_BUDGET, A.NOTIFY) and after.seats[0].body == b"masked"
    refusal = securephases.Arrived("t2", Phase.MASK, NodeStatus.REFUSED, "r", b"no", NOW)
    after, actions = securephases.step(after, refusal)
    assert actions == (A.STORE, A.PHASE_OVER)
    assert (after.seats[1].status, after.seats[1].body) == (NodeStatus.REFUSED, b"no")


def test_a_partial_state_counts_the_seats_it_did_not_load() -> None:
    state = replace(secure_state(seat(1)), others_waiting=4)
    after, actions = securephases.step(state, accept(1))
    assert actions == (A.STORE, A.NOTIFY) and after.waiting()


def test_too_few_answers_at_a_phase_deadline_wait_longer_while_nodes_may_still_answer() -> None:
    """Ending the phase would fail the round for certain, and two nodes still owe their keys
    (slow, e.g. on a busy machine): the phase gets a fair share of the remaining time again."""
    at = NOW + timedelta(minutes=1)
    state = secure_state(
        seat(1, phase=None, keys=keys(1)),
        seat(2, phase=Phase.KEYS),
        seat(3, phase=Phase.KEYS),
        phase=Phase.KEYS,
        t=2,
    )
    after, actions = securephases.step(state, PhaseEnd(at))
    assert actions == (A.EXTEND,)
    assert after == replace(state, phase_deadline=secure.phase_deadline(at, DEADLINE, Phase.KEYS))
    assert after.phase_deadline is not None and at < after.phase_deadline < DEADLINE
    # A timer of the old deadline that fires late changes nothing but re-arms the new one.
    assert securephases.step(after, PhaseEnd(at)) == (after, (A.EXTEND,))
    # The slow nodes answer: the phase ends at once and the round goes on.
    answered, more = securephases.step(after, accept(2, Phase.KEYS, keys(2)))
    assert more == (A.STORE, A.NOTIFY)
    answered, more = securephases.step(answered, accept(3, Phase.KEYS, keys(3)))
    assert more == (A.STORE, A.PHASE_OVER)
    moved, more = securephases.step(answered, PhaseEnd(at, all_in=True))
    assert more == (A.ADVANCE, A.NOTIFY) and moved.phase is Phase.SHARES
    assert moved.roster == ring(1, 2, 3)


def test_at_the_round_deadline_too_few_answers_fail_the_round() -> None:
    state = secure_state(
        seat(1, phase=None, keys=keys(1)), seat(2, phase=Phase.KEYS), phase=Phase.KEYS
    )
    after, actions = securephases.step(state, PhaseEnd(DEADLINE))
    assert actions == (A.CLOSE, A.NOTIFY) and after.failure == "below_threshold_keys"


def test_enough_answers_at_a_phase_deadline_go_on_without_the_slow() -> None:
    at = NOW + timedelta(minutes=1)
    state = secure_state(
        seat(1, phase=None, keys=keys(1)),
        seat(2, phase=None, keys=keys(2)),
        seat(3, phase=Phase.KEYS),
        phase=Phase.KEYS,
        t=2,
    )
    after, actions = securephases.step(state, PhaseEnd(at))
    assert actions == (A.ADVANCE, A.NOTIFY) and after.roster == ring(1, 2)
    assert after.seats[2].status is NodeStatus.TIMED_OUT


def test_announce_ends_at_the_approval_deadline_even_with_too_few() -> None:
    """The approval deadline is what the nodes' operators were shown: it is not moved."""
    at = NOW + timedelta(minutes=1)
    state = secure_state(seat(1, phase=None), seat(2), seat(3), t=3)
    after, actions = securephases.step(state, PhaseEnd(at))
    assert actions == (A.CLOSE, A.NOTIFY) and after.failure == "below_threshold_announce"
