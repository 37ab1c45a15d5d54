"""The end of a secure round, pure: reconstruct the survivors' self-masks and the dropped nodes'
pair masks from the revealed Shamir shares (per neighbourhood of the ring), remove them, and sum.
See ``secure`` for the phases and docs/explanation/secure-aggregation.md for the arithmetic."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from aggregator.merge import noise_variance
from aggregator.rounds.secure import IMPLAUSIBLE_SUM, Member, payload_of, vector_length
from protocol import secagg, secgraph
from protocol.http import MAX_SAFE_INTEGER
from protocol.messages import SecAggKeys, SecAggMasked, SecAggReveal
from protocol.plausibility import value_range
from protocol.query import QuerySpec


class ReconstructionFailed(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Outcome:
    """The unmasked sum per measure and its noise variance (the sum of the shares' variances)."""

    values: dict[str, list[int]]
    variance: dict[str, float]
    noise: bool
    answered: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "values": self.values,
                "variance": self.variance,
                "noise": self.noise,
                "answered": self.answered,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Outcome:
        data = json.loads(text)
        return cls(data["values"], data["variance"], data["noise"], data["answered"])


def reconstruct(
    round_id: str, spec: QuerySpec, threshold: int, roster: Sequence[str], members: Sequence[Member]
) -> Outcome:
    """The sum over the survivors, every mask removed; raises ReconstructionFailed.

    ``roster`` is U1 in ring order exactly as the nodes were told it in phase SHARES: it fixes
    the neighbourhoods and the Shamir positions. U2 is who of U1 shared (their shares were
    relayed), U3 who of U2 is still in the round with a masked vector; the pair masks between
    U3 and its neighbours in U2 − U3 are removed with their reconstructed ``s``.
    """
    by_key = {m.key_id: m for m in members}
    ring = secgraph.Ring.of(roster, threshold)
    index, local_t = ring.index, ring.shape.threshold
    u3 = [m for m in members if m.active and m.masked is not None and m.key_id in index]
    u3_ids = {m.key_id for m in u3}
    u2_ids = {m.key_id for m in members if m.shares is not None and m.key_id in index}
    dropped = sorted(u2_ids - u3_ids)
    reveals: dict[str, SecAggReveal] = {}
    for m in u3:
        if m.reveal is not None:
            reveal = SecAggReveal.model_validate(payload_of(m.reveal))
            # A reveal at the wrong position is left out.
            if reveal.x == index[m.key_id] + 1:
                reveals[m.key_id] = reveal
    weights_cache: dict[tuple[int, ...], list[int]] = {}

    def recover(owner: str, kind: str) -> bytes:
        points = []
        for holder in (owner, *ring.neighbours(owner)):
            reveal = reveals.get(holder)
            if reveal is None:
                continue
            shares = reveal.b_shares if kind == "b" else reveal.s_shares
            if owner in shares:
                points.append((ring.x(owner, holder), int(shares[owner])))
        if len(points) < local_t:
            raise ReconstructionFailed("too_few_shares")
        points = sorted(points)[:local_t]  # the same positions for most owners: weights reused
        xs = tuple(x for x, _ in points)
        weights = weights_cache.get(xs)
        if weights is None:
            weights = weights_cache[xs] = secagg.lagrange_weights(xs)
        return secagg.combine([y for _, y in points], weights)

    if len(reveals) < local_t:
        raise ReconstructionFailed("too_few_reveals")
    length = vector_length(spec)
    self_seeds = {}
    for m in u3:
        b = recover(m.key_id, "b")
        commitment = payload_of(m.shares)["b_commitment"] if m.shares is not None else ""
        if hashlib.sha256(b).hexdigest() != commitment:
            raise ReconstructionFailed("self_mask_mismatch")
        self_seeds[m.key_id] = b
    dropped_pairs = []
    for d in dropped:
        private = secagg.private_from_bytes(recover(d, "s"))
        keys = SecAggKeys.model_validate(payload_of(by_key[d].keys or b"{}"))
        if secagg.public_text(private) != keys.s_public:
            raise ReconstructionFailed("mask_key_mismatch")
        for live in sorted(u3_ids & set(ring.neighbours(d))):
            live_keys = SecAggKeys.model_validate(payload_of(by_key[live].keys or b"{}"))
            shared = secagg.agree(private, live_keys.s_public)
            dropped_pairs.append((live, d, secagg.pair_seed(shared, round_id, live, d)))
    masked = []
    share_sds: dict[str, list[float]] = {measure.value: [] for measure in spec.measures}
    noise = True
    for m in u3:
        message = SecAggMasked.model_validate(payload_of(m.masked or b"{}"))
        masked.append(secagg.from_text(message.vector, length))
        noise = noise and message.noise
        for result in message.measures:
            share_sds[result.measure.value].append(result.noise_sd)
    total = secagg.decode(
        secagg.unmask(
            masked, length, round_id=round_id, self_seeds=self_seeds, dropped_pairs=dropped_pairs
        )
    )
    variance = {name: noise_variance(sds) for name, sds in share_sds.items()}
    cells = spec.cell_count
    values = {
        measure.value: total[index * cells : (index + 1) * cells]
        for index, measure in enumerate(spec.measures)
    }
    # The sum of the survivors' plausible ranges (protocol.plausibility): one node's vector out
    # of range makes the sum implausible, and the round fails rather than publish it.
    for measure in spec.measures:
        low = high = 0
        for sd in share_sds[measure.value]:
            node_low, node_high = value_range(spec, measure, sd)
            low, high = low + node_low, high + node_high
        low, high = max(low, -MAX_SAFE_INTEGER), min(high, MAX_SAFE_INTEGER)
        if any(not low <= value <= high for value in values[measure.value]):
            raise ReconstructionFailed(IMPLAUSIBLE_SUM)
    return Outcome(values=values, variance=variance, noise=noise, answered=len(u3))
