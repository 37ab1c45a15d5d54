"""The aggregator's side of a secure round (design §9; protocol/secagg.py has the arithmetic).

A secure round walks through five phases: ANNOUNCE, KEYS, SHARES, MASK, UNMASK. ANNOUNCE asks
every node whether it takes part: a node with automatic approval accepts at once, a node with
manual approval when its operator approves. It has its own deadline (the approval window, which
may be days); nodes that have not accepted by then are left out (reason ``awaiting_approval``
when their node said it waits for its operator), and the protocol phases begin only after it, so
that no node is dropped from a key phase while its operator is still deciding. Each phase hands
every node still in the round one task and ends when all of them have answered or at the phase
deadline (after ANNOUNCE: the round's remaining time shared over the phases left). Who
answered a phase forms the next phase's set (U1 ⊇ U2 ⊇ U3, as in Bonawitz et al. 2017). A phase
with fewer than t nodes fails the round cleanly: nothing is computed and no partial sum is
released.

At the end of KEYS the aggregator puts U1 in ring order (``protocol.secgraph``): each node
masks with, and shares its secrets among, only its neighbours on that ring, so the SHARES task
carries a node's neighbourhood, not all of U1 (in a small round the neighbourhood is everyone).

After UNMASK the aggregator reconstructs the survivors' self-mask seeds ``b`` and the mask keys
``s`` of nodes that dropped out after sharing, checks every reconstruction against what the
node committed to (the hash of ``b``, the advertised public ``s``), and keeps only the sum.
It never holds an unmasked per-node vector: the masked vectors it stores are uniformly random
on their own, and the sum is computed in memory and stored as the round's outcome.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from protocol import secagg, secgraph
from protocol.calibration import expected_share_noise, matches
from protocol.messages import (
    REFUSAL,
    SECAGG_ACCEPT,
    SECAGG_KEYS,
    SECAGG_MASKED,
    SECAGG_REVEAL,
    SECAGG_SHARES,
    Phase,
    Refusal,
    RefusalReason,
    SecAggAccept,
    SecAggKeys,
    SecAggMasked,
    SecAggReveal,
    SecAggShares,
)
from protocol.query import QuerySpec
from protocol.results import NodeStatus

PHASES = (Phase.ANNOUNCE, Phase.KEYS, Phase.SHARES, Phase.MASK, Phase.UNMASK)
MESSAGE_OF_PHASE = {
    Phase.ANNOUNCE: SECAGG_ACCEPT,
    Phase.KEYS: SECAGG_KEYS,
    Phase.SHARES: SECAGG_SHARES,
    Phase.MASK: SECAGG_MASKED,
    Phase.UNMASK: SECAGG_REVEAL,
}
COLUMN_OF_PHASE = {Phase.KEYS: "keys", Phase.SHARES: "shares", Phase.MASK: "body"}
MIN_PHASE_SECONDS = 2.0

# Reason codes in coverage (NodeOutcome.reason) and for a failed round (RoundResult.failure).
DROPPED_BEFORE_MASKING = "dropped_before_masking"
DROPPED_AFTER_SHARING = "dropped_after_sharing"
MALFORMED_SHARES = "malformed_shares"
MALFORMED_MASKED = "malformed_masked_vector"
MALFORMED_REVEAL = "malformed_reveal"
WRONG_NOISE = "wrong_noise"
IMPLAUSIBLE_SUM = "implausible_sum"


class Foreign(Exception):
    """A correctly signed message about another round or query: rejected, not recorded."""


class Invalid(Exception):
    """A correctly signed phase message that breaks the protocol: the node is excluded."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def default_threshold(nodes: int, min_quorum: int) -> int:
    return max(secagg.default_threshold(nodes), min(min_quorum, nodes))


def phase_deadline(now: datetime, round_deadline: datetime, phase: Phase) -> datetime:
    """The round's remaining time shared evenly over this phase and the protocol phases after
    it. (ANNOUNCE has its own deadline, set when the round is created: ``announce_deadline``.)"""
    left = len(PHASES) - PHASES.index(phase)
    remaining = max(0.0, (round_deadline - now).total_seconds())
    share = max(MIN_PHASE_SECONDS, remaining / left)
    return min(round_deadline, now + timedelta(seconds=share))


def announce_deadline(now: datetime, approval_seconds: int) -> datetime:
    """The end of a secure round's ANNOUNCE phase: the time its nodes' operators have."""
    return now + timedelta(seconds=approval_seconds)


def next_phase(phase: Phase) -> Phase | None:
    index = PHASES.index(phase)
    return PHASES[index + 1] if index + 1 < len(PHASES) else None


def vector_length(spec: QuerySpec) -> int:
    return spec.cell_count * len(spec.measures)


# --- judging one node's phase message --------------------------------------------------------


def judge(
    phase: Phase,
    message_type: str,
    payload: dict[str, Any],
    *,
    round_id: str,
    spec: QuerySpec,
    threshold: int,
    key_id: str,
    roster: Sequence[str],
    accept_exact: bool,
) -> tuple[NodeStatus, str | None]:
    """Classify a correctly signed message for the node's current phase.

    Returns (PENDING, None) for a good phase message (the node stays in the round), (REFUSED,
    reason) for a refusal; raises Invalid for a message that breaks the protocol and Foreign
    for a message about another round or query (an old message replayed: never recorded).
    """
    if payload.get("query_id") != spec.query_id or (
        message_type != REFUSAL and payload.get("round_id") != round_id
    ):
        raise Foreign
    if message_type == REFUSAL:
        try:
            refusal = Refusal.model_validate(payload)
        except ValidationError:
            raise Invalid("malformed_refusal") from None
        return NodeStatus.REFUSED, RefusalReason(refusal.reason).value
    if message_type != MESSAGE_OF_PHASE[phase]:
        raise Invalid(f"expected_{MESSAGE_OF_PHASE[phase]}")
    try:
        if phase is Phase.ANNOUNCE:
            accept = SecAggAccept.model_validate(payload)
            if accept.node_key_id != key_id or accept.query_hash != spec.digest():
                raise Invalid("wrong_accept")
        elif phase is Phase.KEYS:
            keys = SecAggKeys.model_validate(payload)
            if keys.node_key_id != key_id or keys.query_hash != spec.digest():
                raise Invalid("wrong_keys")
            probe = secagg.new_private_key()
            for text in (keys.c_public, keys.s_public):
                secagg.agree(probe, text)  # refuses low-order keys, which would break the round
        elif phase is Phase.SHARES:
            shares = SecAggShares.model_validate(payload)
            ring = secgraph.Ring.of(roster, threshold)
            if (
                shares.node_key_id != key_id
                or key_id not in ring.index
                or set(shares.sealed) != set(ring.neighbours(key_id))
            ):
                raise Invalid(MALFORMED_SHARES)
            expected = 2 * secagg.SHARE_BYTES + 4 + 16 + 12  # plaintext + tag + nonce
            for text in shares.sealed.values():
                if len(text) != math.ceil(expected * 4 / 3):
                    raise Invalid(MALFORMED_SHARES)
            if len(shares.b_commitment) != 64:
                raise Invalid(MALFORMED_SHARES)
        elif phase is Phase.MASK:
            masked = SecAggMasked.model_validate(payload)
            if (
                masked.node_key_id != key_id
                or masked.query_hash != spec.digest()
                or masked.threshold != threshold
                or masked.length != vector_length(spec)
                or tuple(m.measure for m in masked.measures) != spec.measures
                or any(not math.isfinite(m.noise_sd) or m.noise_sd < 0 for m in masked.measures)
            ):
                raise Invalid(MALFORMED_MASKED)
            if not masked.noise and not accept_exact:
                raise Invalid("exact_answer")
            if not honest_shares(spec, threshold, masked):
                raise Invalid(WRONG_NOISE)
            secagg.from_text(masked.vector, masked.length)
        else:
            reveal = SecAggReveal.model_validate(payload)
            values = [*reveal.b_shares.values(), *reveal.s_shares.values()]
            if reveal.node_key_id != key_id or any(int(v) >= secagg.PRIME for v in values):
                raise Invalid(MALFORMED_REVEAL)
            if set(reveal.b_shares) & set(reveal.s_shares):
                raise Invalid(
                    MALFORMED_REVEAL
                )  # both kinds for one peer: never from an honest node
    except (ValidationError, secagg.SecAggError):
        raise Invalid(f"malformed_{phase.value}") from None
    if payload.get("round_id") != round_id or payload.get("query_id") != spec.query_id:
        raise Invalid("wrong_round")
    return NodeStatus.PENDING, None


def honest_shares(spec: QuerySpec, threshold: int, masked: SecAggMasked) -> bool:
    """True when every measure's noise share is the one ``expected_share_noise`` derives from
    the spec and the round's threshold (an exact, test-only answer: SD 0 at that scale)."""
    expected = expected_share_noise(spec, threshold)
    for result in masked.measures:
        want = expected[result.measure]
        sd_ok = matches(result.noise_sd, want.noise_sd) if masked.noise else result.noise_sd == 0
        if not (
            sd_ok
            and matches(result.scale, want.scale)
            and matches(result.sensitivity_l1, want.sensitivity.l1)
            and matches(result.sensitivity_l2, want.sensitivity.l2)
        ):
            return False
    return True


# --- what a task carries -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    """One node of a secure round as the phase logic sees it."""

    task_id: str
    key_id: str
    public_key: str
    status: str
    keys: bytes | None
    shares: bytes | None
    masked: bytes | None
    reveal: bytes | None

    @property
    def active(self) -> bool:
        return self.status == NodeStatus.PENDING.value


def payload_of(raw: bytes) -> dict[str, Any]:
    document = json.loads(raw)
    payload = document["payload"]
    assert isinstance(payload, dict)
    return payload


def ring_of(round_id: str, members: Sequence[Member]) -> list[str]:
    """U1 (the members that advertised keys) in ring order: by the hash of their fresh keys."""
    keys = {}
    for m in members:
        message = SecAggKeys.model_validate(payload_of(m.keys or b"{}"))
        keys[m.key_id] = (message.c_public, message.s_public)
    return secgraph.ring_order(round_id, keys)


def setup_data(roster: Sequence[str], members: Sequence[Member]) -> dict[str, Any]:
    """Phase SHARES, once per round: U1 in ring order and every member's peer entry (its
    enrolled key and signed keys message); ``setup_for`` cuts out one node's neighbourhood."""
    by_key = {m.key_id: m for m in members}
    return {
        "ring": list(roster),
        "peers": {
            key_id: {
                "node_key_id": key_id,
                "public_key": by_key[key_id].public_key,
                "keys": json.loads(by_key[key_id].keys or b"{}"),
            }
            for key_id in roster
        },
    }


def setup_for(setup: dict[str, Any], key_id: str, threshold: int) -> dict[str, Any]:
    """Phase SHARES for one node: the ring, and the node with its neighbours."""
    ring = secgraph.Ring.of(setup["ring"], threshold)
    if key_id not in ring.index:
        return {"ring": setup["ring"], "peers": []}
    peers = setup["peers"]
    return {
        "ring": setup["ring"],
        "peers": [peers[k] for k in (key_id, *ring.neighbours(key_id))],
    }


def sealed_by_recipient(members: Sequence[Member]) -> dict[str, dict[str, str]]:
    """Phase MASK: for each recipient, the sealed shares from every node that shared (U2)."""
    out: dict[str, dict[str, str]] = {}
    for m in members:
        if m.active and m.shares is not None:
            sealed = payload_of(m.shares)["sealed"]
            for recipient, text in sealed.items():
                out.setdefault(recipient, {})[m.key_id] = text
    return out


def survivors(members: Sequence[Member]) -> list[str]:
    """Phase UNMASK: the nodes whose masked vectors the aggregator holds (U3)."""
    return sorted(m.key_id for m in members if m.active and m.masked is not None)
