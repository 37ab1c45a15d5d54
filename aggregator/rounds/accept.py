"""Accepting a node's signed message for its task: verify it against the node's key, judge it,
and let the round's phase machine decide, inside the writer's transaction, what is stored.

The shell around the pure machines (``independent``, ``securephases``): read the state, step,
write what changed. The caller carries out the rest of the actions (wake-ups, timers, replies).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.errors import AggregatorError, ErrorCode
from aggregator.rounds import answers, seats, secure, securephases
from aggregator.rounds.known import Known
from aggregator.rounds.machine import Action
from aggregator.rounds.result import Parsed
from aggregator.services import reports
from aggregator.services.registry import NodeKeys
from aggregator.services.writer import Writer
from aggregator.settings import AggregatorSettings
from aggregator.storage.models import Node, Round
from protocol.messages import (
    ANSWER,
    REFUSAL,
    SECAGG_TYPES,
    BudgetStatus,
    Phase,
    SecAggMasked,
)
from protocol.query import Mode, QuerySpec
from protocol.results import NodeStatus
from protocol.signing import Envelope, SignatureError, public_key_from_text, verify_once


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a message did to its round: the machine's actions, and for the shell around it why
    a message was invalid, which nodes a new phase wakes and when that phase ends."""

    round_id: str
    actions: tuple[Action, ...]
    reason: str | None = None
    wake: tuple[str, ...] = ()
    phase_deadline: datetime | None = None


def signing_key(node: Node, key_id: str) -> str | None:
    """The node's public key with this id: its current key, or during a rotation's overlap
    window its previous one."""
    if key_id == node.key_id:
        return node.public_key
    if (
        key_id == node.retired_key_id
        and node.retired_until is not None
        and node.retired_until > datetime.now(UTC)
    ):
        return node.retired_public_key
    return None


async def _record_budget(
    session: AsyncSession, node_id: str, raw: bytes, budget: BudgetStatus
) -> None:
    # Wall time, as the poll reports it is ordered against use.
    signed = reports.Signed(node_id, raw.decode("utf-8"), budget, datetime.now(UTC))
    await reports.record_spending(session, [signed])


class Acceptance:
    def __init__(
        self,
        settings: AggregatorSettings,
        factory: async_sessionmaker[AsyncSession],
        writer: Writer,
        known: Known,
        node_keys: NodeKeys | None = None,
    ) -> None:
        self.parsed = Parsed()
        self.settings = settings
        self.factory = factory
        self.writer = writer
        self.known = known
        self.node_keys = node_keys

    async def accept(self, task_id: str, raw: bytes, now: datetime) -> Verdict:
        """Check a node's signed answer or refusal for this task and store it. Raises
        AggregatorError for anything that is not this node's message for this task. A secure
        round's task id carries its phase ("<task>.<phase>"); the message type and the round's
        current phase decide what the message is."""
        task_id = task_id.split(".", 1)[0]
        try:
            envelope = Envelope.model_validate_json(raw)
        except ValidationError:
            raise AggregatorError(
                ErrorCode.INVALID_REQUEST, "the body is not a signed message"
            ) from None
        found = await self.known.task(task_id)
        if found is None:
            raise AggregatorError(ErrorCode.TASK_NOT_FOUND)
        owner, query = found
        signer = await self._signer(owner.node_id, envelope.key_id)
        secure_round = query.mode is Mode.SECURE
        allowed = (REFUSAL, *SECAGG_TYPES) if secure_round else (ANSWER, REFUSAL)
        if envelope.type not in allowed:
            raise AggregatorError(ErrorCode.WRONG_MESSAGE_TYPE)
        try:
            payload = verify_once(envelope, envelope.type, signer)
        except SignatureError:
            raise AggregatorError(ErrorCode.BAD_SIGNATURE) from None
        if secure_round:
            async with self.factory() as session:
                row = await session.get(Round, owner.round_id)
                node = await session.get(Node, owner.node_id)
            assert row is not None and node is not None
            return await self._secure(task_id, row, node, envelope.type, payload, raw, now)
        status, reason, parsed = answers.judge(
            envelope.type, payload, query, self.settings.unsafe_accept_exact_answers
        )
        answer = answers.Answer(
            task_id,
            owner.round_id,
            owner.node_id,
            raw,
            status,
            reason,
            parsed.budget if parsed is not None else None,
            now,
            datetime.now(UTC),
        )
        actions = await self.writer.add(answers.ANSWERS, answer)
        if parsed is not None and Action.STORE in actions:
            self.parsed.keep(owner.round_id, task_id, raw, parsed)
        return Verdict(owner.round_id, actions, reason)

    async def _signer(self, node_id: str, key_id: str) -> Ed25519PublicKey:
        """The public key ``key_id`` of the task's node: from the enrolled keys in memory, or,
        for anything else (a removed node, another node's key, a rotation's old key after its
        overlap), as the database says."""
        entry = self.node_keys.get(key_id) if self.node_keys is not None else None
        if (
            entry is not None
            and entry.node_id == node_id
            and (entry.retired_until is None or entry.retired_until > datetime.now(UTC))
        ):
            return entry.key
        async with self.factory() as session:
            node = await session.get(Node, node_id)
        if node is None or node.status != "active":
            raise AggregatorError(ErrorCode.UNKNOWN_KEY)
        signer = signing_key(node, key_id)
        if signer is None:
            raise AggregatorError(ErrorCode.WRONG_NODE)
        return public_key_from_text(signer)

    async def _secure(
        self,
        task_id: str,
        row: Round,
        node: Node,
        message_type: str,
        payload: dict[str, Any],
        raw: bytes,
        now: datetime,
    ) -> Verdict:
        phase = Phase(row.phase) if row.phase else None
        status: NodeStatus | None = None
        reason: str | None = None
        if phase is not None:
            try:
                status, reason = secure.judge(
                    phase,
                    message_type,
                    payload,
                    round_id=row.id,
                    spec=QuerySpec.model_validate_json(row.spec),
                    threshold=row.threshold or 0,
                    key_id=node.key_id,
                    roster=list(secure_roster(row)),
                    accept_exact=self.settings.unsafe_accept_exact_answers,
                )
            except secure.Foreign:
                raise AggregatorError(
                    ErrorCode.ANSWER_MISMATCH, "the message is for another round or query"
                ) from None
            except secure.Invalid as exc:
                status, reason = NodeStatus.INVALID, exc.reason
            if phase is Phase.UNMASK and status is not NodeStatus.PENDING:
                # Its masked vector is in the sum already: a refusal or a bad reveal only means
                # that its shares are missing, which the others' shares make up for.
                status, reason = None, None
        event = securephases.Arrived(task_id, phase, status, reason, raw, now)

        async def store(session: AsyncSession) -> Verdict:
            state = await seats.load(session, row.id, lock=True, only=task_id)
            assert state is not None
            after, actions = securephases.step(state, event)
            await seats.save(session, state, after, now)
            if Action.RECORD_BUDGET in actions:
                budget = SecAggMasked.model_validate(payload).budget
                await _record_budget(session, node.id, raw, budget)
            if Action.PHASE_OVER in actions:
                full = await seats.load(session, row.id)
                assert full is not None
                after, more = securephases.step(full, securephases.PhaseEnd(now, all_in=True))
                await seats.save(session, full, after, now)
                actions += more
            return _verdict(after, actions, reason)

        return await self.writer.run(store)


def secure_roster(row: Round) -> tuple[str, ...]:
    return tuple(json.loads(row.roster or "[]"))


def _verdict(state: securephases.State, actions: tuple[Action, ...], reason: str | None) -> Verdict:
    if Action.EXTEND in actions:
        return Verdict(state.round_id, actions, reason, (), state.phase_deadline)
    if Action.ADVANCE not in actions:
        return Verdict(state.round_id, actions, reason)
    wake = tuple(s.node_id for s in state.seats if s.phase is state.phase)
    return Verdict(state.round_id, actions, reason, wake, state.phase_deadline)


async def end_phase(session: AsyncSession, round_id: str, now: datetime) -> Verdict | None:
    """A secure round's phase deadline passed: move on with whoever answered (None: nothing to
    do, it moved on already or closed). Locked: another aggregator process on the same database
    may be timing it out too."""
    state = await seats.load(session, round_id, lock=True)
    if state is None:
        return None
    after, actions = securephases.step(state, securephases.PhaseEnd(now))
    if not actions:
        return None
    await seats.save(session, state, after, now)
    return _verdict(after, actions, None)
