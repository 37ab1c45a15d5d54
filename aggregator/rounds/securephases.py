"""The phase machine of a secure round, pure: ANNOUNCE → KEYS → SHARES → MASK → UNMASK.

A phase ends when every node still in it has answered, or at its deadline; who answered forms
the next phase's set, and fewer than t fails the round cleanly (no partial sum). After UNMASK the
sum is reconstructed (``unmask.reconstruct``, pure as well). See ``secure`` for the protocol and
docs/explanation/secure-aggregation.md for the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from pydantic import ValidationError

from aggregator.rounds import secure, unmask
from aggregator.rounds.machine import Action
from aggregator.services.registry import AWAITING_APPROVAL
from protocol import secagg
from protocol.messages import Phase, SecAggMasked
from protocol.query import QuerySpec
from protocol.results import NodeStatus


@dataclass(frozen=True, slots=True)
class Seat:
    """One node's task in a secure round, and the phase messages it stored."""

    task_id: str
    node_id: str
    key_id: str
    public_key: str
    status: NodeStatus
    reason: str | None = None
    phase: Phase | None = None  # what the node is asked to do now (None: nothing)
    delivered: bool = True
    keys: bytes | None = None
    shares: bytes | None = None
    body: bytes | None = None  # the masked vector, or a refusal
    reveal: bytes | None = None
    received_at: datetime | None = None

    def member(self) -> secure.Member:
        return secure.Member(
            task_id=self.task_id,
            key_id=self.key_id,
            public_key=self.public_key,
            status=self.status.value,
            keys=self.keys,
            shares=self.shares,
            masked=self.body if self.status is not NodeStatus.REFUSED else None,
            reveal=self.reveal,
        )


@dataclass(frozen=True, slots=True)
class State:
    round_id: str
    spec: QuerySpec
    threshold: int
    deadline: datetime  # the round's
    seats: tuple[Seat, ...]
    open: bool = True
    phase: Phase | None = Phase.ANNOUNCE
    phase_deadline: datetime | None = None
    roster: tuple[str, ...] = ()
    outcome: str | None = None  # the sum (unmask.Outcome JSON)
    failure: str | None = None
    # A message concerns one seat: the shell may load only that one, and count the others
    # that still owe the current phase its message here.
    others_waiting: int = 0

    def waiting(self) -> bool:
        return self.others_waiting > 0 or any(
            s.status is NodeStatus.PENDING and s.phase is not None for s in self.seats
        )


@dataclass(frozen=True, slots=True)
class Arrived:
    """A correctly signed phase message from the node of ``task_id``, judged for ``phase`` (the
    round's phase when it arrived): ``status`` PENDING means it did its part and stays in; None
    (UNMASK only) that there is nothing to store."""

    task_id: str
    phase: Phase | None
    status: NodeStatus | None
    reason: str | None
    raw: bytes
    now: datetime


@dataclass(frozen=True, slots=True)
class PhaseEnd:
    """The phase's deadline passed, or (``all_in``) every node in it has answered."""

    now: datetime
    all_in: bool = False


Event = Arrived | PhaseEnd


def step(state: State, event: Event) -> tuple[State, tuple[Action, ...]]:
    if isinstance(event, PhaseEnd):
        if not state.open or state.phase is None:
            return state, ()
        early = state.phase_deadline is not None and state.phase_deadline > event.now
        if early and not event.all_in:
            # A timer of an earlier deadline (the phase moved on, or waits longer), or one that
            # fired a moment early: the phase goes on until its deadline, (re-)armed here so
            # that no timer is lost.
            return state, (Action.EXTEND,)
        if state.waiting() and event.all_in:
            return state, ()
        moved, actions = advance(state, event.now)
        if not event.all_in and moved.failure is not None and state.waiting():
            longer = _wait_longer(state, event.now)
            if longer is not None:
                return longer, (Action.EXTEND,)
        return moved, actions
    return _arrived(state, event)


def _arrived(state: State, event: Arrived) -> tuple[State, tuple[Action, ...]]:
    index = next(i for i, s in enumerate(state.seats) if s.task_id == event.task_id)
    seat = state.seats[index]
    phase, status = event.phase, event.status
    if event.raw in (seat.keys, seat.shares, seat.body, seat.reveal):
        return state, (Action.ACCEPT_RETRY,)  # a retry of a message already stored
    if (
        phase is Phase.ANNOUNCE
        and status is NodeStatus.PENDING
        and seat.phase is None
        and state.phase is phase
        and seat.status is NodeStatus.PENDING
    ):
        return state, (Action.ACCEPT_RETRY,)  # accepted already (an acceptance is not stored)
    if (
        not state.open
        or seat.status is not NodeStatus.PENDING
        or phase is None
        or state.phase is not phase
    ):
        return state, (Action.REJECT_CLOSED,)
    if seat.phase is None:
        return state, (Action.REJECT_ANSWERED,)
    seat = replace(seat, phase=None, received_at=event.now)
    actions = [Action.STORE]
    if status is NodeStatus.PENDING:
        seat = replace(seat, reason=None)  # e.g. no longer awaiting its operator's approval
        if phase is not Phase.ANNOUNCE:  # an acceptance: staying in is the record
            seat = _with_message(seat, phase, event.raw)
        if phase is Phase.MASK:
            actions.append(Action.RECORD_BUDGET)
    elif status is not None:
        seat = replace(seat, status=status, reason=event.reason)
        if status is NodeStatus.REFUSED:
            seat = replace(seat, body=event.raw)
    seats = (*state.seats[:index], seat, *state.seats[index + 1 :])
    state = replace(state, seats=seats)
    actions.append(Action.NOTIFY if state.waiting() else Action.PHASE_OVER)
    if status is NodeStatus.INVALID:
        actions.append(Action.REJECT_INVALID)
    return state, tuple(actions)


def _with_message(seat: Seat, phase: Phase, raw: bytes) -> Seat:
    if phase is Phase.KEYS:
        return replace(seat, keys=raw)
    if phase is Phase.SHARES:
        return replace(seat, shares=raw)
    if phase is Phase.MASK:
        return replace(seat, body=raw)
    return replace(seat, reveal=raw)


def _drop(seat: Seat, phase: Phase) -> Seat:
    """A node that did not answer ``phase`` in time."""
    if seat.status is not NodeStatus.PENDING or seat.phase is None:
        return seat
    if phase is Phase.UNMASK:  # its vector is in the sum already
        return replace(seat, phase=None)
    reason = seat.reason
    if not seat.delivered:
        reason = "not_delivered"
    elif phase is Phase.ANNOUNCE:
        # Its node said it waits for its operator: keep "awaiting_approval".
        if reason != AWAITING_APPROVAL:
            reason = secure.DROPPED_BEFORE_MASKING
    elif phase is Phase.MASK:
        reason = secure.DROPPED_AFTER_SHARING
    else:
        reason = secure.DROPPED_BEFORE_MASKING
    return replace(seat, phase=None, status=NodeStatus.TIMED_OUT, reason=reason)


def advance(state: State, now: datetime) -> tuple[State, tuple[Action, ...]]:
    """End the current phase: the next one begins with who answered, or the round closes (with
    a sum, or failed)."""
    assert state.phase is not None
    phase, t = state.phase, state.threshold
    seats = tuple(_drop(s, phase) for s in state.seats)
    active = [s for s in seats if s.status is NodeStatus.PENDING]
    roster = state.roster
    if phase is Phase.ANNOUNCE:
        moving = active  # every node that accepted (the others timed out just now)
    elif phase is Phase.KEYS:
        moving = [s for s in active if s.keys is not None]
        roster = tuple(secure.ring_of(state.round_id, [s.member() for s in moving]))
    elif phase is Phase.SHARES:
        moving = [s for s in active if s.shares is not None]
    elif phase is Phase.MASK:
        accused: set[str] = set()
        for s in active:
            if s.body is not None:
                masked = SecAggMasked.model_validate(secure.payload_of(s.body))
                accused.update(masked.bad_shares)
        seats = tuple(
            replace(s, status=NodeStatus.INVALID, reason=secure.MALFORMED_SHARES)
            if s.status is NodeStatus.PENDING and s.key_id in accused
            else s
            for s in seats
        )
        moving = [s for s in active if s.body is not None and s.key_id not in accused]
    else:
        members = [s.member() for s in seats]
        try:
            result = unmask.reconstruct(state.round_id, state.spec, t, list(roster), members)
        except unmask.ReconstructionFailed as exc:
            return _fail(replace(state, seats=seats), str(exc))
        except (secagg.SecAggError, ValidationError):
            return _fail(replace(state, seats=seats), "reconstruction_failed")
        summed = tuple(
            replace(s, status=NodeStatus.ANSWERED)
            if s.status is NodeStatus.PENDING and s.body is not None
            else s
            for s in seats
        )
        closed = replace(state, seats=summed, outcome=result.to_json(), open=False, phase=None)
        return closed, (Action.CLOSE, Action.NOTIFY)
    if len(moving) < t:
        return _fail(replace(state, seats=seats, roster=roster), f"below_threshold_{phase.value}")
    following = secure.next_phase(phase)
    assert following is not None
    chosen = {s.task_id for s in moving}
    seats = tuple(replace(s, phase=following) if s.task_id in chosen else s for s in seats)
    moved = replace(
        state,
        seats=seats,
        roster=roster,
        phase=following,
        phase_deadline=secure.phase_deadline(now, state.deadline, following),
    )
    return moved, (Action.ADVANCE, Action.NOTIFY)


def _wait_longer(state: State, now: datetime) -> State | None:
    """The phase's deadline passed with too few answers to go on, while some of its nodes may
    still answer (on a busy machine, or a node that is slow to start). Ending the phase now fails
    the round for certain, so give the phase a fair share of the round's remaining time again
    (as when it began); at the round's deadline it ends, whoever answered. None: no time left."""
    assert state.phase is not None
    if state.phase is Phase.ANNOUNCE or now >= state.deadline:
        return None  # ANNOUNCE ends at the approval deadline its operators were shown
    later = secure.phase_deadline(now, state.deadline, state.phase)
    if later <= now:
        return None
    return replace(state, phase_deadline=later)


def _fail(state: State, failure: str) -> tuple[State, tuple[Action, ...]]:
    """Close without a sum. Nodes still in the round did their part (answered)."""
    seats = tuple(
        replace(s, status=NodeStatus.ANSWERED, reason="round_failed", phase=None)
        if s.status is NodeStatus.PENDING
        else replace(s, phase=None)
        for s in state.seats
    )
    failed = replace(state, seats=seats, failure=failure[:64], open=False, phase=None)
    return failed, (Action.CLOSE, Action.NOTIFY)
