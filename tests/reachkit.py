"""Factories for the reach tests: overlapping populations over nodes, and a whole reach round
run in-process through the real node, helper and aggregator functions of ``protocol.reach``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from protocol.reach import buckets, histogram, shares, shuffle
from protocol.reach.calibration import DummyPlan
from protocol.reach.layout import Layout

SECRET = bytes(range(32))  # the helpers' shared secret in tests


@dataclass(frozen=True)
class Population:
    """``persons`` people over ``nodes`` institutions; person p visits the nodes in
    ``member[p]`` with ``visits[p][i]`` visits at each; node i has category ``category[i]``."""

    pseudonyms: list[bytes]
    member: list[npt.NDArray[np.int64]]
    visits: list[npt.NDArray[np.int64]]
    category: npt.NDArray[np.int64]

    @property
    def nodes(self) -> int:
        return int(self.category.size)

    def at(self, node: int) -> tuple[list[bytes], list[int]]:
        """The pseudonyms and visit counts of one node's people."""
        ps, vs = [], []
        for p, (m, v) in enumerate(zip(self.member, self.visits, strict=True)):
            hit = np.flatnonzero(m == node)
            if hit.size:
                ps.append(self.pseudonyms[p])
                vs.append(int(v[hit[0]]))
        return ps, vs

    def institutions(self) -> npt.NDArray[np.int64]:
        return np.array([m.size for m in self.member])

    def sector_visits(self, cap: int) -> npt.NDArray[np.int64]:
        return np.array([int(np.minimum(v, cap).sum()) for v in self.visits])

    def patterns(self) -> npt.NDArray[np.int64]:
        """Each person's set of categories, bit c for category c."""
        return np.array([int(np.bitwise_or.reduce(1 << self.category[m])) for m in self.member])


def population(seed: int, persons: int, nodes: int, categories: int = 1) -> Population:
    """People visit 1 + Geometric institutions, popular institutions more often (Zipf-like)."""
    rng = np.random.default_rng(seed)
    weight = 1 / np.arange(1, nodes + 1) ** 0.8
    weight /= weight.sum()
    k = np.minimum(rng.geometric(0.55, persons), nodes)
    member = [np.sort(rng.choice(nodes, int(n), replace=False, p=weight)) for n in k]
    visits = [rng.geometric(0.45, m.size).astype(np.int64) for m in member]
    category = np.arange(nodes) % categories
    pseudonyms = [rng.bytes(16) for _ in range(persons)]
    return Population(pseudonyms, member, visits, category)


def run_round(
    layout: Layout,
    plan: DummyPlan,
    vectors: Sequence[tuple[tuple[int, ...], npt.NDArray[Any]]],
    dummy_counts: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None,
    round_id: bytes = b"round-1",
) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any], npt.NDArray[Any]]:
    """Nodes split, helpers sum, add dummies and shuffle, the aggregator histograms.

    ``dummy_counts``: each helper's dummy count per value (zeros when omitted: noise off).
    Returns the noisy histogram and the two helpers' output vectors."""
    split = [shares.split(v, layout, cols) for cols, v in vectors]
    total_a = shares.sum_explicit([(s.columns, s.explicit) for s in split], layout)
    total_b = shares.sum_seeds([(s.columns, s.seed) for s in split], layout)
    zeros = np.zeros(layout.values, dtype=np.int64)
    counts = dummy_counts or (zeros, zeros)
    rows_a = shuffle.dummy_rows(counts[0], layout)
    rows_b = shuffle.dummy_rows(counts[1], layout)
    out_a = shuffle.helper_output(total_a, rows_a, rows_b.shape[0], 0, SECRET, round_id, layout)
    out_b = shuffle.helper_output(total_b, rows_b, rows_a.shape[0], 1, SECRET, round_id, layout)
    return histogram.noisy_histogram(out_a, out_b, layout, plan), out_a, out_b


def count_vectors(
    pop: Population, salt: bytes, layout: Layout, cap: int | None = None
) -> list[tuple[tuple[int, ...], npt.NDArray[Any]]]:
    """Every node's presence vector (or capped-visits vector when ``cap`` is given)."""
    out = []
    for node in range(pop.nodes):
        ps, vs = pop.at(node)
        if cap is None:
            vec = buckets.count_vector(ps, salt, layout)
        else:
            vec = buckets.visits_vector(ps, vs, cap, salt, layout)
        out.append(((), vec))
    return out


def pattern_vectors(
    pop: Population, salt: bytes, layout: Layout
) -> list[tuple[tuple[int, ...], npt.NDArray[Any]]]:
    out = []
    for node in range(pop.nodes):
        ps, _ = pop.at(node)
        cat = int(pop.category[node])
        pv = buckets.pattern_vector(ps, [{cat}] * len(ps), salt, layout, columns=(cat,))
        out.append((pv.columns, pv.values))
    return out
