"""What the phase machines say: the actions a step asks of the shell.

Each kind of round (``independent``, ``securephases``; reach rounds next) is a module of pure
functions ``step(state, event) -> (state, actions)``: no database, no clock, no I/O. The shell
(``accept``, ``service``) reads the state inside the writer's transaction, calls ``step``, writes
the new state and carries out the actions in order. A new kind of round is a new module with its
own state and events that answers in these actions.
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    # What the node that sent a message is told.
    ACCEPT_RETRY = "accept_retry"  # a byte-identical retry of a stored message: fine
    REJECT_ANSWERED = "reject_answered"  # its task holds another message already
    REJECT_CLOSED = "reject_closed"  # too late: the round or its phase has ended
    REJECT_INVALID = "reject_invalid"  # stored, as invalid: the node signed something wrong
    # What is written.
    STORE = "store"  # the message on its task, with the new status
    RECORD_BUDGET = "record_budget"  # the budget the message states, on the node
    TIME_OUT = "time_out"  # unsettled tasks time out
    CLOSE = "close"  # the round is closed (its timer and waiters go)
    PHASE_OVER = "phase_over"  # every node in a secure phase answered: end the phase now
    ADVANCE = "advance"  # a secure round's next phase began: re-arm, wake its nodes
    EXTEND = "extend"  # the secure phase goes on until its (maybe later) deadline: (re-)arm
    NOTIFY = "notify"  # the round changed: wake waiting analysts


REPLIES = frozenset(
    {Action.ACCEPT_RETRY, Action.REJECT_ANSWERED, Action.REJECT_CLOSED, Action.REJECT_INVALID}
)
