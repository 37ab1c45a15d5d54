"""The neighbour graph of a secure round, and the per-neighbourhood threshold (design §9, §11).

After Bell, Bonawitz, Gascón, Lepoint and Raykova, "Secure Single-Server Aggregation with
(Poly)Logarithmic Overhead" (CCS 2020): instead of pairing every node with every other node,
each node masks with, and Shamir-shares its two secrets among, only its neighbours in a graph of
degree k = O(log N), with a threshold t of its own neighbourhood. The graph is their Harary
graph H(n, k) on a random order of the nodes: the nodes sit on a ring, and each is joined to the
k/2 nearest on either side. In rounds of fewer than ``SPARSE_FROM`` nodes, or when no sparse
graph meets the bounds, the radius covers the whole ring and the graph *is* the complete graph
of Bonawitz et al. 2017, with the round's own threshold: one code path for both.

**The ring order** is public and derived by every node: each node's place is
SHA-256(``publieksdata-secagg-v1|ring|<round id>|<key id>|<c_public>|<s_public>``), sorted. The
two X25519 public keys are fresh: a node draws them in the KEYS phase, after the round id was
fixed, so an honest node's place is uniformly random and unknown to the aggregator until that
node answers. The aggregator chooses neither the hash nor an honest node's keys; what it decides
is only which responders form U1 (docs/explanation/threat-model.md, "The sparse graph").

**k and t** follow from the number of nodes n = |U1| and three protocol constants, the same on
every node and the aggregator (so the aggregator cannot ask for weaker ones): at most a fraction
γ of the nodes collude with the aggregator, at most a fraction δ drop out after sharing, and
each bad event below has probability at most 2^-σ over the random order. ``sparse_parameters``
returns the smallest even k for which some t meets all three conditions, and the smallest such
t; the arithmetic, with a table, is in docs/explanation/secure-aggregation.md ("The sparse
graph"), and test vectors in tests/protocol/test_secgraph.py.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

VERSION = "publieksdata-secagg-v1"
COLLUDING = 0.05  # γ: the fraction of nodes that may collude with the aggregator
DROPPING = 0.05  # δ: the fraction of U1 that may drop out after sharing
SECURITY_BITS = 40  # σ: every bad event of the graph has probability ≤ 2^-σ
# Below this many nodes a round uses the complete graph: all-pairs costs little there, and it
# tolerates far more dropouts and colluders (a third of the nodes, with the default threshold).
SPARSE_FROM = 100
_EVENTS = 3  # the three conditions, each a union over n nodes (or windows)


class GraphError(ValueError):
    """A ring or neighbourhood that does not follow from the public inputs."""


# --- the arithmetic -----------------------------------------------------------------------------


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def least_tail(union: int, total: int, marked: int, draws: int, sigma: int) -> int:
    """The smallest c with union · P[X ≥ c] ≤ 2^-σ, X hypergeometric: ``draws`` of ``total``
    items of which ``marked`` are marked (so X < c for each of ``union`` events at once, but
    with probability 2^-σ)."""
    target = 2.0**-sigma / union
    low, high = max(0, draws - (total - marked)), min(marked, draws)
    denominator = _log_comb(total, draws)
    tail = 0.0
    for x in range(high, low - 1, -1):
        p = math.exp(_log_comb(marked, x) + _log_comb(total - marked, draws - x) - denominator)
        if tail + p > target:
            return x + 1
        tail += p
    return low


@dataclass(frozen=True, slots=True)
class SparseBounds:
    """One sparse choice and the bounds that justify it (all hold together but with 2^-σ)."""

    degree: int  # k, even
    threshold: int  # t of each closed neighbourhood of k + 1 holders
    max_dropped: int  # dropped neighbours of any node
    max_colluding: int  # colluding neighbours of any node
    max_colluding_window: int  # colluding nodes in any 3k/2 consecutive places of the ring


def cut_holds(degree: int, threshold: int, colluding_window: int) -> bool:
    """No run of k/2 consecutive nodes can be declared dropped by enough of their honest
    neighbours (which would cut the ring and expose a partial sum): for every c < the bound,
    (r − c)(t − c) > 3ru − u² + u with r = k/2 and u = k + 1 − t (the derivation is in
    docs/explanation/threat-model.md, "The sparse graph")."""
    r, u = degree // 2, degree + 1 - threshold
    supply = 3 * r * u - u * u + u
    return all((r - c) * (threshold - c) > supply for c in range(colluding_window))


@lru_cache(maxsize=256)
def sparse_parameters(
    nodes: int,
    colluding: float = COLLUDING,
    dropping: float = DROPPING,
    sigma: int = SECURITY_BITS,
) -> SparseBounds | None:
    """The smallest even k < n − 1 with a t that meets, each but with 2^-σ / 3:

    1. availability: every node has at most k − t dropped neighbours (a dropped node's s is
       rebuilt from t of its k neighbours; a survivor's b from t of k + 1);
    2. no unmasking: every node has at most 2t − k − 2 colluding neighbours (an aggregator that
       lies about dropouts then cannot collect t shares of both b and s of one node);
    3. no cut: ``cut_holds`` for the colluders in any window of 3k/2 consecutive places;

    with ⌊γn⌋ colluders and ⌊δn⌋ dropouts at random places of the ring; t is the smallest that
    meets 2 and 3, so that it tolerates the most dropouts. None when no k < n − 1 does.
    """
    if nodes < 2:
        raise GraphError("a secure round has at least 2 nodes")
    colluders, dropouts = math.ceil(colluding * nodes), math.ceil(dropping * nodes)
    union = _EVENTS * nodes
    for degree in range(4, nodes - 1, 2):
        r = degree // 2
        max_dropped = least_tail(union, nodes - 1, dropouts, degree, sigma) - 1
        max_colluding = least_tail(union, nodes - 1, colluders, degree, sigma) - 1
        window = least_tail(union, nodes, colluders, min(3 * r, nodes), sigma)
        threshold = max(math.ceil((degree + max_colluding + 2) / 2), r + 1)
        while threshold <= degree - max_dropped and not cut_holds(degree, threshold, window):
            threshold += 1
        if threshold <= degree - max_dropped:
            return SparseBounds(degree, threshold, max_dropped, max_colluding, window - 1)
    return None


@dataclass(frozen=True, slots=True)
class Neighbourhoods:
    """The graph's shape for n nodes: radius r (neighbours at ring distance 1 … r), the number
    of holders of each node's secrets (its closed neighbourhood) and their threshold."""

    nodes: int
    radius: int
    threshold: int

    @property
    def complete(self) -> bool:
        return 2 * self.radius + 1 >= self.nodes

    @property
    def holders(self) -> int:
        return self.nodes if self.complete else 2 * self.radius + 1


def neighbourhoods(nodes: int, round_threshold: int) -> Neighbourhoods:
    """Sparse from ``SPARSE_FROM`` nodes on, when some k < n − 1 meets the bounds; else the
    complete graph, with the round's threshold."""
    bounds = sparse_parameters(nodes) if nodes >= SPARSE_FROM else None
    if bounds is None:
        return Neighbourhoods(nodes, nodes // 2, round_threshold)
    return Neighbourhoods(nodes, bounds.degree // 2, bounds.threshold)


# --- the ring -----------------------------------------------------------------------------------


def place(round_id: str, key_id: str, c_public: str, s_public: str) -> bytes:
    """A node's place on the round's ring: the hash of its fresh public keys."""
    text = f"{VERSION}|ring|{round_id}|{key_id}|{c_public}|{s_public}"
    return hashlib.sha256(text.encode()).digest()


def ring_order(round_id: str, keys: Mapping[str, tuple[str, str]]) -> list[str]:
    """U1 in ring order: key ids sorted by ``place`` (``keys``: key id → (c_public, s_public))."""
    return sorted(keys, key=lambda k: (place(round_id, k, *keys[k]), k))


@dataclass(frozen=True, slots=True)
class Ring:
    """U1 in ring order with the round's neighbourhoods: who is whose neighbour, and at which
    Shamir position each holder keeps an owner's share."""

    order: tuple[str, ...]
    shape: Neighbourhoods
    index: dict[str, int] = field(compare=False, repr=False)

    @classmethod
    def of(cls, order: Sequence[str], round_threshold: int) -> Ring:
        index = {key_id: i for i, key_id in enumerate(order)}
        if len(index) != len(order):
            raise GraphError("a node is on the ring twice")
        return cls(tuple(order), neighbourhoods(len(order), round_threshold), index)

    def offset(self, owner: str, holder: str) -> int:
        """The signed ring distance from owner to holder, in (−n/2, n/2]."""
        index, n = self.index, len(self.order)
        d = (index[holder] - index[owner]) % n
        return d - n if 2 * d > n else d

    def neighbours(self, key_id: str) -> tuple[str, ...]:
        """The nodes at ring distance 1 … r (everyone else, in a complete graph), nearest first."""
        i, n, order = self.index[key_id], len(self.order), self.order
        if self.shape.complete:
            return tuple(order[(i + d) % n] for d in _complete_offsets(n))
        return tuple(
            order[(i + s * d) % n] for d in range(1, self.shape.radius + 1) for s in (1, -1)
        )

    def x(self, owner: str, holder: str) -> int:
        """The Shamir position (1 … holders) of holder's share of owner's secrets: 1 + the
        signed ring offset mod the number of holders; the owner itself keeps x = 1."""
        return self.offset(owner, holder) % self.shape.holders + 1


@lru_cache(maxsize=64)
def _complete_offsets(n: int) -> tuple[int, ...]:
    """1, −1, 2, −2, … : every other place of a ring of n once, nearest first."""
    out: list[int] = []
    for d in range(1, n // 2 + 1):
        out.extend((d,) if 2 * d == n else (d, -d))
    return tuple(out)


def cyclically_sorted(places: Sequence[bytes]) -> bool:
    """True when the sequence is a stretch of a sorted ring: ascending, except for at most one
    wrap-around from the largest to the smallest, after which it stays below where it began."""
    descents = sum(1 for a, b in itertools.pairwise(places) if b <= a)
    return descents == 0 or (descents == 1 and places[-1] < places[0])


def check_neighbourhood(
    round_id: str,
    order: Sequence[str],
    me: str,
    keys: Mapping[str, tuple[str, str]],
    round_threshold: int,
) -> Ring:
    """What a node checks of the ring the aggregator relays, with the signed keys of its closed
    neighbourhood (``keys``: key id → (c_public, s_public), already verified): it is on it, the
    peers it got are exactly its neighbours, and their places agree with the order. In a
    complete graph it holds everyone's keys and checks the whole order. Raises GraphError."""
    ring = Ring.of(order, round_threshold)
    if me not in ring.index:
        raise GraphError("this node is not on the ring")
    expected = {me, *ring.neighbours(me)}
    if set(keys) != expected:
        raise GraphError("the peers relayed are not this node's neighbours on the ring")
    if ring.shape.complete:
        if list(order) != ring_order(round_id, keys):
            raise GraphError("the ring is not in the order of the nodes' places")
        return ring
    i, n, r = ring.index[me], len(order), ring.shape.radius
    stretch = [order[(i + d) % n] for d in range(-r, r + 1)]
    if not cyclically_sorted([place(round_id, k, *keys[k]) for k in stretch]):
        raise GraphError("the neighbours' places do not agree with the ring")
    return ring
