"""The phase machine of an independent round, pure: one phase (QUERY); it closes when every
node has settled or at its deadline, whichever comes first."""

from __future__ import annotations

from dataclasses import dataclass

from aggregator.rounds.machine import Action
from protocol.results import NodeStatus


@dataclass(frozen=True, slots=True)
class State:
    open: bool
    pending: int  # tasks not settled yet


@dataclass(frozen=True, slots=True)
class Arrived:
    """A node's correctly signed message for its task, judged (``status``)."""

    status: NodeStatus  # ANSWERED, REFUSED or INVALID
    raw: bytes
    stored: bytes | None  # what the task holds already
    task_pending: bool  # the task has not settled (nor timed out)
    budget: bool = False  # the message states the node's budget


@dataclass(frozen=True, slots=True)
class Deadline:
    pass


Event = Arrived | Deadline


def step(state: State, event: Event) -> tuple[State, tuple[Action, ...]]:
    if isinstance(event, Deadline):
        if not state.open:
            return state, ()
        return State(open=False, pending=0), (Action.TIME_OUT, Action.CLOSE, Action.NOTIFY)
    if event.stored is not None:  # settled by the node itself
        return state, (
            Action.ACCEPT_RETRY if event.stored == event.raw else Action.REJECT_ANSWERED,
        )
    if not state.open or not event.task_pending:
        return state, (Action.REJECT_CLOSED,)  # timed out at the deadline: too late
    actions = [Action.STORE]
    if event.budget:
        actions.append(Action.RECORD_BUDGET)
    pending = state.pending - 1
    if pending <= 0:
        actions.append(Action.CLOSE)
    actions.append(Action.NOTIFY)
    if event.status is NodeStatus.INVALID:
        actions.append(Action.REJECT_INVALID)
    return State(open=pending > 0, pending=max(pending, 0)), tuple(actions)
