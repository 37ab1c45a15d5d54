"""The sparse neighbour graph of secure rounds (protocol/secgraph.py): the threshold arithmetic
as test vectors, the ring, the node's checks, and masks that cancel exactly over the graph with
dropped nodes' pair masks rebuilt from their neighbours' shares."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from protocol import secagg, secgraph
from protocol.secgraph import SparseBounds

# n → (k, t, max dropped neighbours, max colluding neighbours, max colluders in a 3k/2 window)
# for γ = δ = 0.05 and σ = 40 (the table in docs/explanation/secure-aggregation.md).
VECTORS = {
    12: (10, 9, 1, 1, 1),
    20: (10, 9, 1, 1, 1),
    30: (16, 14, 2, 2, 2),
    50: (22, 19, 3, 3, 3),
    100: (34, 29, 5, 5, 5),
    300: (94, 79, 15, 15, 15),
    1000: (252, 213, 39, 39, 45),
    3000: (382, 325, 57, 57, 72),
    10000: (470, 400, 70, 70, 89),
}


@pytest.mark.parametrize("nodes", sorted(VECTORS))
def test_sparse_parameters_vectors(nodes: int) -> None:
    assert secgraph.sparse_parameters(nodes) == SparseBounds(*VECTORS[nodes])


@pytest.mark.parametrize("nodes", [2, 5, 10, 11])
def test_no_sparse_graph_for_a_handful_of_nodes(nodes: int) -> None:
    assert secgraph.sparse_parameters(nodes) is None
    shape = secgraph.neighbourhoods(nodes, nodes - 1 if nodes > 2 else 2)
    assert shape.complete and shape.holders == nodes


def test_below_sparse_from_the_graph_is_complete_with_the_rounds_threshold() -> None:
    shape = secgraph.neighbourhoods(90, 60)
    assert shape.complete and shape.holders == 90 and shape.threshold == 60
    shape = secgraph.neighbourhoods(100, 67)
    assert not shape.complete and (shape.holders, shape.threshold) == (35, 29)


def _tail(union: int, total: int, marked: int, draws: int, at_least: int) -> float:
    """union · P[X ≥ at_least], X hypergeometric, in exact integers."""
    favourable = sum(
        math.comb(marked, x) * math.comb(total - marked, draws - x)
        for x in range(at_least, min(marked, draws) + 1)
    )
    return union * favourable / math.comb(total, draws)


@pytest.mark.parametrize("nodes", [100, 300, 1000])
def test_each_bound_holds_and_k_is_the_smallest(nodes: int) -> None:
    """Recomputed in exact integer arithmetic: every bad event has probability ≤ 2^-σ/(3n),
    the threshold meets conditions 1–3, and k − 2 admits no threshold."""
    b = secgraph.sparse_parameters(nodes)
    assert b is not None
    colluders = dropouts = math.ceil(0.05 * nodes)
    limit = 2.0**-secgraph.SECURITY_BITS
    union = 3 * nodes
    k, t, r = b.degree, b.threshold, b.degree // 2
    assert _tail(union, nodes - 1, dropouts, k, b.max_dropped + 1) <= limit
    assert _tail(union, nodes - 1, colluders, k, b.max_colluding + 1) <= limit
    assert _tail(union, nodes, colluders, 3 * r, b.max_colluding_window + 1) <= limit
    assert b.max_dropped <= k - t  # 1: availability
    assert b.max_colluding <= 2 * t - k - 2  # 2: no unmasking by a split view
    assert secgraph.cut_holds(k, t, b.max_colluding_window + 1)  # 3: no cut
    assert t > k // 2
    # k − 2: the least t for conditions 2 and 3 exceeds what availability allows.
    r2 = (k - 2) // 2
    window = secgraph.least_tail(union, nodes, colluders, 3 * r2, 40)
    max_dropped = secgraph.least_tail(union, nodes - 1, dropouts, k - 2, 40) - 1
    max_colluding = secgraph.least_tail(union, nodes - 1, colluders, k - 2, 40) - 1
    candidates = [
        tt
        for tt in range(r2 + 1, k - 2 - max_dropped + 1)
        if max_colluding <= 2 * tt - (k - 2) - 2 and secgraph.cut_holds(k - 2, tt, window)
    ]
    assert candidates == []


def test_the_cut_condition_vectors() -> None:
    """(r − c)(t − c) > 3ru − u² + u with u = k + 1 − t: a run of r nodes cannot be declared
    dropped by enough honest neighbours. Around t ≈ 0.71·k without colluders."""
    assert secgraph.cut_holds(34, 29, 6)
    assert not secgraph.cut_holds(34, 28, 6)
    assert secgraph.cut_holds(100, 72, 1) and not secgraph.cut_holds(100, 71, 1)


def test_place_vector() -> None:
    place = secgraph.place("round-1", "0123456789abcdef", "c", "s")
    assert place.hex() == "c07e62e8490f1a67a2f6dc553fa3acfdd7294278a022bb6458195fea2be7c857"


@pytest.mark.parametrize(("nodes", "threshold"), [(4, 3), (7, 5), (100, 67), (1000, 667)])
def test_the_ring_is_a_regular_symmetric_graph_with_distinct_positions(
    nodes: int, threshold: int
) -> None:
    order = [f"{i:016x}" for i in range(nodes)]
    ring = secgraph.Ring.of(order, threshold)
    shape = ring.shape
    near = {key_id: set(ring.neighbours(key_id)) for key_id in order}
    for key_id in order:
        neighbours = ring.neighbours(key_id)
        assert len(near[key_id]) == len(neighbours) == shape.holders - 1
        assert key_id not in near[key_id]
        assert all(key_id in near[j] for j in neighbours)
        xs = sorted(ring.x(key_id, h) for h in (key_id, *neighbours))
        assert xs == list(range(1, shape.holders + 1)) and ring.x(key_id, key_id) == 1


Privates = dict[str, tuple[X25519PrivateKey, X25519PrivateKey]]


def _keys(nodes: int) -> tuple[Privates, dict[str, tuple[str, str]]]:
    privates: Privates = {}
    publics: dict[str, tuple[str, str]] = {}
    for i in range(nodes):
        c, s = secagg.new_private_key(), secagg.new_private_key()
        key_id = f"{i:016x}"
        privates[key_id] = (c, s)
        publics[key_id] = (secagg.public_text(c), secagg.public_text(s))
    return privates, publics


def test_a_node_checks_its_neighbourhood() -> None:
    _, publics = _keys(120)
    order = secgraph.ring_order("r", publics)
    ring = secgraph.Ring.of(order, 80)
    me = order[7]
    near = {k: publics[k] for k in (me, *ring.neighbours(me))}
    assert secgraph.check_neighbourhood("r", order, me, near, 80) == ring
    with pytest.raises(secgraph.GraphError, match="not this node's neighbours"):
        far = dict(near)
        far.pop(ring.neighbours(me)[0])
        secgraph.check_neighbourhood("r", order, me, far, 80)
    # Two neighbours swapped: the places no longer agree with the order.
    a, b = order.index(ring.neighbours(me)[0]), order.index(ring.neighbours(me)[2])
    swapped = list(order)
    swapped[a], swapped[b] = swapped[b], swapped[a]
    with pytest.raises(secgraph.GraphError, match="places"):
        secgraph.check_neighbourhood("r", swapped, me, near, 80)
    # Another round's order: this node's own place moves.
    with pytest.raises(secgraph.GraphError):
        secgraph.check_neighbourhood("other round", order, me, near, 80)
    with pytest.raises(secgraph.GraphError, match="not on the ring"):
        secgraph.check_neighbourhood("r", [k for k in order if k != me], me, near, 80)


def test_a_complete_ring_must_be_exactly_in_place_order() -> None:
    _, publics = _keys(5)
    order = secgraph.ring_order("r", publics)
    assert secgraph.check_neighbourhood("r", order, order[0], publics, 4).shape.complete
    with pytest.raises(secgraph.GraphError, match="order"):
        secgraph.check_neighbourhood("r", order[::-1], order[0], publics, 4)


def test_masks_cancel_over_the_sparse_graph_and_dropouts_are_recovered() -> None:
    """120 nodes (k = 40, t = 34): each masks with its 40 neighbours and Shamir-shares s and b
    among its closed neighbourhood. Five nodes drop after sharing; the sum over the others is
    exact once the survivors' self-masks and the pair masks of the dropped are removed, each
    secret rebuilt from t shares held by neighbours."""
    rid, length = "round-sparse", 6
    privates, publics = _keys(120)
    order = secgraph.ring_order(rid, publics)
    ring = secgraph.Ring.of(order, 80)
    shape = ring.shape
    assert not shape.complete and (shape.holders, shape.threshold) == (41, 34)
    rng = np.random.default_rng(7)
    values = {k: [int(v) for v in rng.integers(-1000, 1000, length)] for k in order}
    b_seeds = {k: os.urandom(32) for k in order}
    held: dict[str, dict[str, tuple[int, int]]] = {k: {} for k in order}  # holder → owner → (s, b)
    for owner in order:
        _, s_key = privates[owner]
        s_shares = dict(secagg.split(secagg.private_bytes(s_key), shape.holders, shape.threshold))
        b_shares = dict(secagg.split(b_seeds[owner], shape.holders, shape.threshold))
        for holder in (owner, *ring.neighbours(owner)):
            x = ring.x(owner, holder)
            held[holder][owner] = (s_shares[x], b_shares[x])

    def seed(a: str, b: str) -> bytes:
        _, s_key = privates[a]
        return secagg.pair_seed(secagg.agree(s_key, publics[b][1]), rid, a, b)

    masked = {
        k: secagg.masked_input(
            secagg.encode(values[k]),
            round_id=rid,
            me=k,
            b=b_seeds[k],
            pair_seeds={j: seed(k, j) for j in ring.neighbours(k)},
        )
        for k in order
    }
    # Without dropouts: the pair masks cancel; only the self-masks remain to remove.
    total = secagg.unmask(
        masked.values(), length, round_id=rid, self_seeds=b_seeds, dropped_pairs=[]
    )
    assert secagg.decode(total) == [sum(col) for col in zip(*values.values(), strict=True)]

    dropped = set(order[10:15])  # five neighbours of each other: the hardest place
    live = [k for k in order if k not in dropped]

    def rebuild(owner: str, kind: int) -> bytes:
        points = sorted(
            (ring.x(owner, h), held[h][owner][kind])
            for h in (owner, *ring.neighbours(owner))
            if h not in dropped
        )[: shape.threshold]
        assert len(points) == shape.threshold
        weights = secagg.lagrange_weights([x for x, _ in points])
        return secagg.combine([y for _, y in points], weights)

    self_seeds = {k: rebuild(k, 1) for k in live}
    assert self_seeds == {k: b_seeds[k] for k in live}
    pairs = []
    for d in sorted(dropped):
        s_private = secagg.private_from_bytes(rebuild(d, 0))
        assert secagg.public_text(s_private) == publics[d][1]
        for j in ring.neighbours(d):
            if j not in dropped:
                shared = secagg.agree(s_private, publics[j][1])
                pairs.append((j, d, secagg.pair_seed(shared, rid, j, d)))
    total = secagg.unmask(
        [masked[k] for k in live], length, round_id=rid, self_seeds=self_seeds, dropped_pairs=pairs
    )
    assert secagg.decode(total) == [sum(values[k][i] for k in live) for i in range(length)]
