"""95% intervals of the reach estimates cover the pooled truth 95% ± 3% of the time.

Seeded repetitions: a fixed population (seeded), a new round salt per repetition (seeded), so
the real bucket hash draws new collisions each time, and real OpenDP dummies. Two regimes:

* collisions dominate (3,000 persons in 2^13 buckets, λ ≈ 0.37): reach and institutions per
  person. The dummies are drawn for the histogram values the estimate reads (0..3), with the
  plan's law; the whole-round noise is tested in test_reach_noise.py;
* noise dominates (400 persons in 2^14 buckets, 3 categories): the Venn, with every one of the
  8 pattern values' dummies drawn as a round draws them.

The collision part is fixed by the seeds. The noise is fresh on each run (OpenDP cannot be
seeded), so the coverage count varies a little between runs; with R repetitions its SD is at
most √(0.95·0.05/R), which at R = 1,500 puts ±3% more than 5 SD away: a correct method fails
far less than once in a million runs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from protocol.reach import buckets, estimate
from protocol.reach.calibration import HELPERS, DummyPlan, plan
from protocol.reach.histogram import value_counts
from protocol.reach.layout import Kind, Layout
from protocol.reach.noise import draw_dummy_counts
from protocol.reach.venn import venn
from tests.reachkit import population

RHO = 0.05


def salts(seed: int, reps: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.bytes(16) for _ in range(reps)]


def noisy(hist: np.ndarray, p: DummyPlan) -> np.ndarray:
    """hist + both helpers' dummies − their shift, per value of ``hist``."""
    q = dataclasses.replace(p, values=hist.size)
    return hist + draw_dummy_counts(q) + draw_dummy_counts(q) - HELPERS * q.shift


def test_reach_and_frequency_intervals_cover_95_percent() -> None:
    layout = Layout(Kind.COUNT, 13)
    pop = population(seed=21, persons=3000, nodes=10)
    k = pop.institutions()
    truth = [k.size, (k == 1).sum(), (k == 2).sum(), (k == 3).sum(), (k >= 4).sum()]
    p = plan(layout, RHO)
    reps = 1500
    covered = np.zeros(5)
    for salt in salts(1, reps):
        idx = buckets.bucket_indices(pop.pseudonyms, salt, layout)
        values = np.bincount(idx, weights=k, minlength=layout.buckets).astype(np.int64) & 0xFF
        hist = value_counts(values, layout)[:4]
        f = estimate.frequency(noisy(hist, p), layout.buckets, p.noise_variance, top=4)
        ivs = [f.reach, *f.bins, f.tail]
        covered += [iv.covers(t) for iv, t in zip(ivs, truth, strict=True)]
    coverage = covered / reps
    assert np.all(np.abs(coverage - 0.95) <= 0.03), coverage


def test_overlap_intervals_cover_95_percent_when_noise_dominates() -> None:
    layout = Layout(Kind.PATTERN, 14, categories=3)
    pop = population(seed=22, persons=400, nodes=9, categories=3)
    pats = pop.patterns()
    truth = [pats.size, ((pats & 3) == 3).sum(), ((pats & 4) != 0).sum(), (pats == 1).sum()]
    p = plan(layout, RHO)
    reps = 1500
    covered = np.zeros(4)
    sds = np.zeros(4)
    for salt in salts(2, reps):
        idx = buckets.bucket_indices(pop.pseudonyms, salt, layout)
        shown = np.zeros(layout.buckets, dtype=np.int64)
        np.bitwise_or.at(shown, idx, pats)
        hist = np.bincount(shown, minlength=layout.values)
        v = venn(noisy(hist, p), 3, layout.buckets, p.noise_variance)
        ivs = [v.reach(), v.all_of([0, 1]), v.any_of([2]), v.exactly([0])]
        covered += [iv.covers(t) for iv, t in zip(ivs, truth, strict=True)]
        sds += [iv.sd for iv in ivs]
    coverage = covered / reps
    assert np.all(np.abs(coverage - 0.95) <= 0.03), coverage
    # Noise dominates here: the intervals are wider than the collisions alone would make them.
    assert sds[0] / reps > 2 * pats.size / np.sqrt(2 * layout.buckets)
