"""The node's side of a secure round (design §9; protocol/secagg.py has the arithmetic).

A secure round reaches the node as four tasks, one per phase. Between phases the node keeps the
round's ephemeral secrets in memory only: a node that restarts mid-round has dropped out, which
the protocol survives, and no ephemeral key ever reaches the disk.

1. KEYS: policy, budget and worst-case check; two fresh X25519 key pairs; their public halves,
   signed with the node's long-term key.
2. SHARES: check the ring (``protocol.secgraph``) and the signed keys of this node's neighbours
   on it, then Shamir-share the mask key ``s`` and a fresh self-mask seed ``b`` among its closed
   neighbourhood (the neighbourhood's threshold) and seal one pair of shares to each neighbour.
   In a small round every node is every other's neighbour (the complete graph).
3. MASK: open the shares addressed to this node, compute the exact aggregate, add this node's
   noise share (OpenDP), mask with the neighbours that shared, **debit the ledger and commit**,
   and only then release the masked vector. A retry of this task returns the stored bytes and
   spends nothing.
4. UNMASK: for each neighbour that shared, reveal the share of ``b`` if the aggregator says it
   is a survivor, of ``s`` if it says it dropped; never both, and only once per round, so that a
   lie about who dropped out cannot unmask anyone.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from node.privacy.distributed import SecureCalibration, secure_calibrations
from node.privacy.noise import add_noise, zcdp_to_epsilon
from node.services import audit, ledger
from node.services.aggregate import run_aggregate
from node.services.answering import Answerer
from node.services.policy import check_policy
from node.storage.db import transaction
from protocol import secagg, secgraph
from protocol.clock import Clock, SystemClock
from protocol.messages import (
    REFUSAL,
    SECAGG_ACCEPT,
    SECAGG_KEYS,
    SECAGG_MASKED,
    SECAGG_REVEAL,
    SECAGG_SHARES,
    Phase,
    PrivacySpent,
    Refusal,
    RefusalReason,
    SecAggAccept,
    SecAggKeys,
    SecAggMasked,
    SecAggPeer,
    SecAggReveal,
    SecAggShares,
    SecureMeasure,
    Task,
)
from protocol.query import Mode, QuerySpec
from protocol.signing import (
    Envelope,
    SignatureError,
    key_id_of,
    public_key_from_text,
    sign,
    verify_once,
)


class ProtocolViolation(Exception):
    """The aggregator asked for something the protocol does not allow; the node refuses."""


@dataclass(slots=True)
class Session:
    round_id: str
    spec: QuerySpec
    analyst: str
    requester_key_id: str
    threshold: int
    expires: datetime
    c_key: X25519PrivateKey
    s_key: X25519PrivateKey
    keys_body: bytes
    roster: dict[str, SecAggKeys] = field(default_factory=dict)  # the neighbourhood, by key id
    ring: secgraph.Ring | None = None  # U1 in ring order, with the neighbourhoods' shape
    b: bytes | None = None
    shares_body: bytes | None = None
    own: secagg.SharePair | None = None  # this node's shares of its own secrets
    received: dict[str, secagg.SharePair] = field(default_factory=dict)
    u2: tuple[str, ...] = ()
    masked_body: bytes | None = None
    survivors: tuple[str, ...] | None = None
    reveal_body: bytes | None = None


class SecureParty:
    """Answers the phases of secure rounds for one node. Thread-safe; sessions live in memory."""

    def __init__(self, answerer: Answerer, clock: Clock | None = None) -> None:
        self.answerer = answerer
        self.clock = clock or SystemClock()  # when a round's session expires
        self.settings = answerer.settings
        self.key = answerer.key
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    # --- entry ------------------------------------------------------------------------------

    def handle(self, task: Task, requester_key_id: str) -> bytes:
        """The signed body to post for this task: a phase message, or a signed refusal."""
        self._expire()
        spec = task.request.spec
        try:
            if spec.mode is not Mode.SECURE or task.threshold is None:
                raise ProtocolViolation("a secure phase for a query that is not secure")
            with self._lock:  # one phase at a time per node: phases are short and ordered
                if task.phase is Phase.ANNOUNCE:
                    return self._accept(task)
                if task.phase is Phase.KEYS:
                    return self._keys(task, requester_key_id)
                session = self._sessions.get(task.round_id)
                if session is None:
                    raise ProtocolViolation(
                        "this node holds no keys for the round (it restarted, or never joined it)"
                    )
                if session.spec.digest() != spec.digest() or session.threshold != task.threshold:
                    raise ProtocolViolation("the round's query or threshold changed mid-round")
                if task.phase is Phase.SHARES:
                    return self._shares(session, task)
                if task.phase is Phase.MASK:
                    return self._mask(session, task)
                if task.phase is Phase.UNMASK:
                    return self._unmask(session, task)
                raise ProtocolViolation(f"unknown phase {task.phase}")
        except ProtocolViolation as exc:
            return self._refusal(task, requester_key_id, RefusalReason.SECURE_PROTOCOL, str(exc))
        except secagg.SecAggError as exc:  # a peer's key or share that breaks the arithmetic
            return self._refusal(task, requester_key_id, RefusalReason.SECURE_PROTOCOL, str(exc))
        except _Refused as exc:
            return self._refusal(task, requester_key_id, exc.reason, exc.message)

    def _expire(self) -> None:
        now = self.clock.now()
        with self._lock:
            for round_id in [r for r, s in self._sessions.items() if s.expires < now]:
                del self._sessions[round_id]

    def forget(self, round_id: str) -> None:
        with self._lock:
            self._sessions.pop(round_id, None)

    def _refusal(
        self, task: Task, requester_key_id: str, reason: RefusalReason, message: str
    ) -> bytes:
        spec = task.request.spec
        refusal = Refusal(query_id=spec.query_id, reason=reason, message=message)
        audit.record_refusal(
            self.answerer.writer,
            query_id=spec.query_id,
            reason=reason.value,
            message=message,
            analyst=task.request.analyst,
            via=requester_key_id,
            spec=spec,
            phase=task.phase.value if task.phase is not None else None,
        )
        return _body(sign(REFUSAL, refusal.model_dump(mode="json"), self.key))

    # --- phase 0: announce -------------------------------------------------------------------

    def _accept(self, task: Task) -> bytes:
        """Take part (approved, or approval is automatic). Nothing is kept and nothing is
        spent: the policy and budget checks that decide are made again at KEYS; here they only
        refuse early a round this node would refuse anyway."""
        assert task.threshold is not None
        spec = task.request.spec
        self._check_answerable(spec, task.threshold)
        message = SecAggAccept(
            round_id=task.round_id,
            query_id=spec.query_id,
            query_hash=spec.digest(),
            node_key_id=self.key.key_id,
        )
        return _body(sign(SECAGG_ACCEPT, message.model_dump(mode="json"), self.key))

    # --- phase 1 ----------------------------------------------------------------------------

    def _keys(self, task: Task, requester_key_id: str) -> bytes:
        if self.settings.budget_sync_path.exists():
            raise _Refused(
                RefusalReason.BUDGET_SYNC,
                "this node was restored from a backup and waits for its aggregator to confirm "
                "the budget it had spent",
            )
        existing = self._sessions.get(task.round_id)
        if existing is not None:
            if existing.spec.digest() != task.request.spec.digest():
                raise ProtocolViolation("the round's query changed mid-round")
            return existing.keys_body  # a redelivered task: the same keys
        spec = task.request.spec
        assert task.threshold is not None
        self._check_answerable(spec, task.threshold)
        c_key, s_key = secagg.new_private_key(), secagg.new_private_key()
        message = SecAggKeys(
            round_id=task.round_id,
            query_id=spec.query_id,
            query_hash=spec.digest(),
            node_key_id=self.key.key_id,
            c_public=secagg.public_text(c_key),
            s_public=secagg.public_text(s_key),
        )
        body = _body(sign(SECAGG_KEYS, message.model_dump(mode="json"), self.key))
        self._sessions[task.round_id] = Session(
            round_id=task.round_id,
            spec=spec,
            analyst=task.request.analyst,
            requester_key_id=requester_key_id,
            threshold=task.threshold,
            expires=task.deadline + timedelta(seconds=60),
            c_key=c_key,
            s_key=s_key,
            keys_body=body,
        )
        return body

    def _check_answerable(self, spec: QuerySpec, threshold: int) -> None:
        refusal = check_policy(spec, self.settings, threshold)  # incl. the worst case at t
        if refusal is not None:
            raise _Refused(refusal.reason, refusal.message)
        self._check_budget(spec)

    def _check_budget(self, spec: QuerySpec) -> None:
        with self.answerer.reader() as session:
            period = self.answerer.budget_period()
            cost = spec.privacy.rho_charged
            if not ledger.can_afford(session, period, cost, self.settings.budget_rho):
                raise _Refused(
                    RefusalReason.BUDGET_EXHAUSTED,
                    "the node's privacy budget for the period does not cover this query",
                )

    # --- phase 2 ----------------------------------------------------------------------------

    def _shares(self, session: Session, task: Task) -> bytes:
        if session.shares_body is not None:
            return session.shares_body
        if task.setup is None:
            raise ProtocolViolation("the shares phase came without the list of peers")
        roster = self._check_roster(session, task.setup.peers)
        ring = self._check_ring(session, task.setup.ring, roster)
        shape = ring.shape
        session.roster = roster
        session.ring = ring
        session.b = os.urandom(32)
        s_shares = dict(
            secagg.split(secagg.private_bytes(session.s_key), shape.holders, shape.threshold)
        )
        b_shares = dict(secagg.split(session.b, shape.holders, shape.threshold))
        me = self.key.key_id
        sealed = {}
        for peer in (me, *ring.neighbours(me)):
            x = ring.x(me, peer)
            pair = secagg.SharePair(me, peer, x, s_shares[x], b_shares[x])
            if peer == me:
                session.own = pair
                continue
            shared = secagg.agree(session.c_key, roster[peer].c_public)
            key = secagg.share_key(shared, session.round_id, me, peer)
            sealed[peer] = secagg.seal(pair, key, session.round_id)
        message = SecAggShares(
            round_id=session.round_id,
            query_id=session.spec.query_id,
            node_key_id=me,
            sealed=sealed,
            b_commitment=hashlib.sha256(session.b).hexdigest(),
        )
        session.shares_body = _body(sign(SECAGG_SHARES, message.model_dump(mode="json"), self.key))
        return session.shares_body

    def _check_ring(
        self, session: Session, order: tuple[str, ...], roster: dict[str, SecAggKeys]
    ) -> secgraph.Ring:
        """The ring must follow from the public inputs, and be large enough for t."""
        n, t = len(order), session.threshold
        if n < t:
            raise ProtocolViolation(f"only {n} nodes advertised keys; the threshold is {t}")
        if t < secagg.minimum_threshold(n):
            raise ProtocolViolation(
                f"threshold {t} is too low for {n} nodes (at least {secagg.minimum_threshold(n)})"
            )
        keys = {key_id: (k.c_public, k.s_public) for key_id, k in roster.items()}
        try:
            return secgraph.check_neighbourhood(session.round_id, order, self.key.key_id, keys, t)
        except secgraph.GraphError as exc:
            raise ProtocolViolation(str(exc)) from None

    def _check_roster(
        self, session: Session, peers: tuple[SecAggPeer, ...]
    ) -> dict[str, SecAggKeys]:
        roster: dict[str, SecAggKeys] = {}
        for peer in peers:
            if peer.node_key_id in roster:
                raise ProtocolViolation(f"peer {peer.node_key_id} is listed twice")
            try:
                public = public_key_from_text(peer.public_key)
                if key_id_of(public) != peer.node_key_id:
                    raise ProtocolViolation(f"peer {peer.node_key_id}: key id and key disagree")
                payload = verify_once(Envelope.model_validate(peer.keys), SECAGG_KEYS, public)
                keys = SecAggKeys.model_validate(payload)
            except (SignatureError, ValidationError, ValueError) as exc:
                raise ProtocolViolation(f"peer {peer.node_key_id}: {exc}") from None
            if (
                keys.round_id != session.round_id
                or keys.query_hash != session.spec.digest()
                or keys.node_key_id != peer.node_key_id
            ):
                raise ProtocolViolation(f"peer {peer.node_key_id}: keys for another round")
            roster[peer.node_key_id] = keys
        mine = roster.get(self.key.key_id)
        if (
            mine is None
            or mine.c_public != secagg.public_text(session.c_key)
            or mine.s_public != secagg.public_text(session.s_key)
        ):
            raise ProtocolViolation("this node's own keys are missing or altered in the roster")
        return roster

    # --- phase 3 ----------------------------------------------------------------------------

    def _mask(self, session: Session, task: Task) -> bytes:
        if session.masked_body is not None:
            return session.masked_body
        if session.b is None or session.own is None or session.ring is None:
            raise ProtocolViolation("the mask phase came before this node shared its seeds")
        if task.mask is None:
            raise ProtocolViolation("the mask phase came without the shares for this node")
        me = self.key.key_id
        senders = set(task.mask.sealed)
        if me in senders or not senders <= set(session.roster):
            raise ProtocolViolation("shares from nodes that did not advertise keys")
        u2 = tuple(sorted(senders | {me}))
        local_t = session.ring.shape.threshold
        if len(u2) < local_t:
            raise ProtocolViolation(
                f"only {len(u2)} nodes of this node's neighbourhood shared their seeds; "
                f"its threshold is {local_t}"
            )
        bad: list[str] = []
        for sender, text in task.mask.sealed.items():
            shared = secagg.agree(session.c_key, session.roster[sender].c_public)
            key = secagg.share_key(shared, session.round_id, sender, me)
            try:
                pair = secagg.open_sealed(text, key, session.round_id, sender, me)
            except secagg.SecAggError:
                bad.append(sender)
                continue
            if pair.x != session.ring.x(sender, me):
                bad.append(sender)
                continue
            session.received[sender] = pair
        session.u2 = u2
        seeds = {
            peer: secagg.pair_seed(
                secagg.agree(session.s_key, session.roster[peer].s_public),
                session.round_id,
                me,
                peer,
            )
            for peer in u2
            if peer != me
        }
        session.masked_body = self._release(session, seeds, tuple(sorted(bad)))
        return session.masked_body

    def _release(self, session: Session, seeds: dict[str, bytes], bad: tuple[str, ...]) -> bytes:
        """Aggregate, add the noise share, mask, debit and commit; then the bytes may leave."""
        spec = session.spec
        answerer = self.answerer
        stored = self._stored(spec)
        if stored is not None:
            return stored
        refusal = check_policy(spec, self.settings)
        if refusal is not None:
            raise _Refused(refusal.reason, refusal.message)
        calibrations = secure_calibrations(spec, session.threshold)
        now = datetime.now(UTC)
        period = answerer.budget_period(now)
        cost = spec.privacy.rho_charged
        with answerer.reader() as db:
            if not ledger.can_afford(db, period, cost, self.settings.budget_rho):
                raise _Refused(
                    RefusalReason.BUDGET_EXHAUSTED,
                    "the node's privacy budget for the period does not cover this query",
                )
            exact = run_aggregate(db, spec)
        noise = not self.settings.unsafe_disable_noise
        values: list[int] = []
        for measure in spec.measures:
            column = list(exact[measure])
            values.extend(
                add_noise(column, calibrations[measure].calibration()) if noise else column
            )
        assert session.b is not None
        masked = secagg.masked_input(
            secagg.encode(values),
            round_id=session.round_id,
            me=self.key.key_id,
            b=session.b,
            pair_seeds=seeds,
        )
        worst = math.fsum(c.rho_worst for c in calibrations.values())
        spent = PrivacySpent(
            rho=cost, epsilon=zcdp_to_epsilon(cost, spec.privacy.delta), delta=spec.privacy.delta
        )
        debit = ledger.Debit(
            query_id=spec.query_id,
            query_hash=spec.digest(),
            requester_key_id=session.requester_key_id,
            analyst=session.analyst,
            period=period,
            rho=cost,
            epsilon=spent.epsilon,
            delta=spent.delta,
            created_at=now,
            mode=Mode.SECURE.value,
            threshold=session.threshold,
            rho_worst=worst,
        )
        try:
            with transaction(answerer.writer) as db:
                ledger.debit(
                    db,
                    debit,
                    cap_rho=self.settings.budget_rho,
                    analyst_cap_rho=self.settings.analyst_budget_rho,
                )
                message = SecAggMasked(
                    round_id=session.round_id,
                    query_id=spec.query_id,
                    query_hash=debit.query_hash,
                    catalogue_version=spec.catalogue_version,
                    answered_at=now,
                    node_key_id=self.key.key_id,
                    threshold=session.threshold,
                    length=len(values),
                    vector=secagg.to_text(masked),
                    measures=tuple(_measure(c, noise) for c in calibrations.values()),
                    privacy=spent,
                    rho_worst=worst,
                    budget=ledger.status(db, period, self.settings.budget_rho),
                    noise=noise,
                    bad_shares=bad,
                )
                body = _body(
                    sign(SECAGG_MASKED, message.model_dump(mode="json"), self.key, now=now)
                )
                ledger.record(db, debit, body, spec=spec, cap_rho=self.settings.budget_rho)
        except ledger.BudgetExhausted as exc:
            reason = (
                RefusalReason.ANALYST_BUDGET_EXHAUSTED
                if exc.scope == "analyst"
                else RefusalReason.BUDGET_EXHAUSTED
            )
            raise _Refused(reason, "the privacy budget does not cover this query") from None
        except IntegrityError:
            stored = self._stored(spec)
            if stored is None:
                raise
            return stored
        return body

    def _stored(self, spec: QuerySpec) -> bytes | None:
        with self.answerer.reader() as db:
            entry = ledger.stored_answer(db, spec.query_id)
            if entry is None:
                return None
            if entry.query_hash != spec.digest() or entry.mode != Mode.SECURE.value:
                raise _Refused(
                    RefusalReason.QUERY_ID_REUSED,
                    "this query id was already used for another query",
                )
            return bytes(entry.answer)

    # --- phase 4 ----------------------------------------------------------------------------

    def _unmask(self, session: Session, task: Task) -> bytes:
        if task.unmask is None:
            raise ProtocolViolation("the unmask phase came without the list of survivors")
        survivors = tuple(sorted(set(task.unmask.survivors)))
        if session.survivors is not None:
            if survivors != session.survivors:
                raise ProtocolViolation(
                    "the aggregator asked again with a different list of survivors; this node "
                    "reveals its shares only once per round"
                )
            assert session.reveal_body is not None
            return session.reveal_body
        if session.masked_body is None or session.own is None or session.ring is None:
            raise ProtocolViolation("the unmask phase came before this node submitted its vector")
        me = self.key.key_id
        ring = session.ring
        nearby = set(survivors) & {me, *ring.neighbours(me)}
        if (
            len(survivors) != len(task.unmask.survivors)
            or not set(survivors) <= set(ring.index)
            or not nearby <= set(session.u2)
        ):
            raise ProtocolViolation("survivors that did not share their seeds in this round")
        if me not in survivors:
            raise ProtocolViolation("this node submitted its vector but is not listed as survivor")
        if len(survivors) < session.threshold:
            raise ProtocolViolation(
                f"only {len(survivors)} survivors; the threshold is {session.threshold}"
            )
        if len(nearby) < ring.shape.threshold:
            raise ProtocolViolation(
                f"only {len(nearby)} survivors in this node's neighbourhood; its threshold is "
                f"{ring.shape.threshold}"
            )
        b_shares: dict[str, str] = {}
        s_shares: dict[str, str] = {}
        for peer in session.u2:
            pair = session.own if peer == me else session.received.get(peer)
            if pair is None:
                continue  # its shares did not open: nothing to reveal
            if peer in survivors:
                b_shares[peer] = str(pair.b_share)
            else:
                s_shares[peer] = str(pair.s_share)
        message = SecAggReveal(
            round_id=session.round_id,
            query_id=session.spec.query_id,
            node_key_id=me,
            x=ring.index[me] + 1,
            b_shares=b_shares,
            s_shares=s_shares,
        )
        session.survivors = survivors
        session.reveal_body = _body(sign(SECAGG_REVEAL, message.model_dump(mode="json"), self.key))
        # The secrets have done their work; keep only what answers a redelivered task.
        session.received.clear()
        session.b = None
        return session.reveal_body


class _Refused(Exception):
    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _measure(c: SecureCalibration, noise: bool) -> SecureMeasure:
    return SecureMeasure(
        measure=c.measure,
        scale=c.scale,
        noise_sd=c.noise_sd if noise else 0.0,
        sensitivity_l1=c.sensitivity.l1,
        sensitivity_l2=c.sensitivity.l2,
        rho=c.rho,
        rho_worst=c.rho_worst,
    )


def _body(envelope: Envelope) -> bytes:
    return envelope.model_dump_json().encode("utf-8")


__all__ = ["ProtocolViolation", "SecureParty", "Session"]
