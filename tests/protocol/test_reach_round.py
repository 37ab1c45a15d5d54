"""The reach round with noise off: shares, dummies and shuffle are exact, and the estimates
equal the pooled distinct counts of generated overlapping populations within the collision
tolerance (their own 95% interval, which is then the hash's randomness alone)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from protocol.reach import buckets, estimate, histogram, shuffle
from protocol.reach.calibration import DummyPlan, unsafe_noise_off
from protocol.reach.layout import Kind, Layout
from protocol.reach.venn import venn
from tests.reachkit import SECRET, count_vectors, pattern_vectors, population, run_round

SALT = b"reach-test-salt!"
POP = population(seed=7, persons=6000, nodes=12, categories=3)


def test_round_reconstructs_the_sum_of_the_node_vectors_exactly() -> None:
    layout = Layout(Kind.COUNT, 12)
    vectors = count_vectors(POP, SALT, layout)
    total = np.sum([v.astype(np.int64) for _, v in vectors], axis=0) & 0xFF
    hist, out_a, out_b = run_round(layout, unsafe_noise_off(layout), vectors)
    assert out_a.shape == out_b.shape == (layout.buckets,)
    assert np.array_equal(hist, np.bincount(total, minlength=256))
    # The aggregator gets the bucket values in a shuffled order, not bucket by bucket.
    values = out_a + out_b
    assert np.array_equal(np.sort(values), np.sort(total.astype(np.uint8)))
    assert not np.array_equal(values, total.astype(np.uint8))


def test_dummies_reach_the_histogram_and_only_there() -> None:
    layout = Layout(Kind.COUNT, 10)
    vectors = count_vectors(POP, SALT, layout)
    plain, _, _ = run_round(layout, unsafe_noise_off(layout), vectors)
    rng = np.random.default_rng(3)
    counts = (rng.integers(0, 5, 256), rng.integers(0, 5, 256))
    plan = DummyPlan(rho=1.0, scale=1.0, shift=2, values=256, truncation_delta=1e-3)
    noisy, out_a, _ = run_round(layout, plan, vectors, counts)
    assert out_a.shape == (layout.buckets + counts[0].sum() + counts[1].sum(),)
    assert np.array_equal(noisy - plain, counts[0] + counts[1] - 4)


def test_pattern_dummies_show_their_pattern() -> None:
    layout = Layout(Kind.PATTERN, 6, categories=3)
    counts = np.arange(8, dtype=np.int64)
    rows = shuffle.dummy_rows(counts, layout, seed=bytes(32))
    assert np.array_equal(histogram.value_counts(rows, layout), counts)


def test_the_shuffle_is_common_to_both_helpers_and_new_each_round() -> None:
    p1 = shuffle.permutation(SECRET, b"round-1", 1000)
    assert np.array_equal(p1, shuffle.permutation(SECRET, b"round-1", 1000))
    assert np.array_equal(np.sort(p1), np.arange(1000))
    assert not np.array_equal(p1, shuffle.permutation(SECRET, b"round-2", 1000))
    assert not np.array_equal(p1, shuffle.permutation(bytes(32), b"round-1", 1000))


@pytest.mark.parametrize("log2_buckets", [14, 17])
def test_noise_off_reach_and_institutions_match_the_pooled_counts(log2_buckets: int) -> None:
    layout = Layout(Kind.COUNT, log2_buckets)
    hist, _, _ = run_round(layout, unsafe_noise_off(layout), count_vectors(POP, SALT, layout))
    f = estimate.frequency(hist, layout.buckets, 0.0, top=4)
    k = POP.institutions()
    pooled = [len(POP.pseudonyms), *((k == v).sum() for v in (1, 2, 3)), (k >= 4).sum()]
    for iv, truth in zip([f.reach, *f.bins, f.tail], pooled, strict=True):
        assert iv.covers(truth), (iv, truth)
    # The collision correction matters: the plain count of occupied buckets is far off.
    occupied = layout.buckets - hist[0]
    assert abs(f.reach.estimate - len(POP.pseudonyms)) < abs(occupied - len(POP.pseudonyms))
    assert f.reach.sd < 0.01 * len(POP.pseudonyms)


def test_noise_off_capped_sector_visits_match_the_pooled_counts() -> None:
    layout = Layout(Kind.COUNT, 16)
    hist, _, _ = run_round(layout, unsafe_noise_off(layout), count_vectors(POP, SALT, layout, 8))
    f = estimate.frequency(hist, layout.buckets, 0.0, top=6)
    visits = POP.sector_visits(cap=8)  # each node caps at 8; the sector total is then binned
    pooled = [len(visits), *((visits == v).sum() for v in range(1, 6)), (visits >= 6).sum()]
    for iv, truth in zip([f.reach, *f.bins, f.tail], pooled, strict=True):
        assert iv.covers(truth), (iv, truth)


def test_noise_off_overlaps_match_the_pooled_counts() -> None:
    layout = Layout(Kind.PATTERN, 15, categories=3)
    hist, _, _ = run_round(layout, unsafe_noise_off(layout), pattern_vectors(POP, SALT, layout))
    v = venn(hist, 3, layout.buckets, 0.0)
    pats = POP.patterns()
    checks = [
        (v.reach(), len(pats)),
        (v.any_of([1]), ((pats & 2) != 0).sum()),
        (v.any_of([0, 2]), ((pats & 5) != 0).sum()),
        (v.all_of([0, 1]), ((pats & 3) == 3).sum()),
        (v.all_of([0, 1, 2]), (pats == 7).sum()),
        (v.exactly([2]), (pats == 4).sum()),
        (v.exactly([0, 2]), (pats == 5).sum()),
    ]
    for iv, truth in checks:
        assert iv.covers(truth), (iv, truth)
    # Exact patterns add up to the reach.
    exact = sum(v.exactly([c for c in range(3) if p >> c & 1]).estimate for p in range(1, 8))
    assert exact == pytest.approx(v.reach().estimate)


def test_a_person_at_two_nodes_counts_once() -> None:
    layout = Layout(Kind.COUNT, 20)
    people = [bytes([i]) * 8 for i in range(1, 50)]
    vectors = [((), buckets.count_vector(people, SALT, layout)) for _ in range(3)]
    hist, _, _ = run_round(layout, unsafe_noise_off(layout), vectors)
    assert hist[3] == 49 and hist[0] == layout.buckets - 49  # no collision among 49 in 2^20
    f = estimate.frequency(hist, layout.buckets, 0.0, top=4)
    assert f.reach.estimate == pytest.approx(49, abs=0.01)
    assert f.bins[2].estimate == pytest.approx(49, abs=0.01)


def test_only_the_helpers_noise_module_imports_opendp() -> None:
    """Nodes and the aggregator use every other reach module without loading OpenDP."""
    code = (
        "import sys\n"
        "from protocol.reach import buckets, calibration, estimate, histogram, plausibility\n"
        "from protocol.reach import shares, shuffle, venn\n"
        "assert 'opendp' not in sys.modules, 'opendp was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
