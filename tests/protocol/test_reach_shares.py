"""Secret shares of reach vectors: exact, each alone uniform, and bad input refused clearly.

The uniformity tests use fixed seeds (the shares come from ChaCha20 keystreams, which are
deterministic given the seed), so they give the same answer on every run; each also shows its
power on a share that is *not* uniform."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from protocol.reach import buckets, shares
from protocol.reach.calibration import unsafe_noise_off
from protocol.reach.errors import ReachInputError
from protocol.reach.histogram import noisy_histogram
from protocol.reach.layout import Kind, Layout
from protocol.reach.prg import expand, uniform_nonzero

ALPHA = 1e-6
SALT = b"reach-test-salt!"
COUNT = Layout(Kind.COUNT, 16)
PATTERN = Layout(Kind.PATTERN, 12, categories=4)


def uniform_pvalue(values: np.ndarray, levels: int) -> float:
    return float(stats.chisquare(np.bincount(values.ravel(), minlength=levels)).pvalue)


def skewed_vector() -> np.ndarray:
    """A very non-uniform vector: mostly 0, some 1..3 (like a real presence vector)."""
    rng = np.random.default_rng(11)
    return rng.choice(4, COUNT.buckets, p=[0.85, 0.1, 0.04, 0.01]).astype(np.uint8)


def test_either_share_alone_is_uniform() -> None:
    v = skewed_vector()
    s = shares.split(v, COUNT, seed=bytes(range(32)))
    seed_share = expand(s.seed, v.shape, COUNT.dtype)
    assert uniform_pvalue(v, 256) < ALPHA  # the power: the vector itself is far from uniform
    for share in (s.explicit, seed_share):
        assert uniform_pvalue(share, 256) > ALPHA
        # ... and independent of the vector: uniform both where v = 0 and where v > 0.
        assert uniform_pvalue(share[v == 0], 256) > ALPHA
        assert uniform_pvalue(share[v > 0], 256) > ALPHA
        # Pairs of neighbouring entries are uniform on 256² values (no structure between them).
        pairs = share[0::2].astype(np.int64) * 256 + share[1::2]
        assert uniform_pvalue(pairs // 16, 4096) > ALPHA


def test_a_helpers_sum_is_uniform_and_the_sums_reconstruct() -> None:
    vs = [skewed_vector() for _ in range(5)]
    split = [shares.split(v, COUNT, seed=bytes([i]) * 32) for i, v in enumerate(vs)]
    a = shares.sum_explicit([((), s.explicit) for s in split], COUNT)
    b = shares.sum_seeds([((), s.seed) for s in split], COUNT)
    assert uniform_pvalue(a, 256) > ALPHA and uniform_pvalue(b, 256) > ALPHA
    total = np.sum([v.astype(np.int64) for v in vs], axis=0) & 0xFF
    assert np.array_equal(a + b, total)


def test_pattern_shares_are_uniform_and_add_into_their_columns() -> None:
    people = [i.to_bytes(4, "big") for i in range(1500)]
    pv = buckets.pattern_vector(people, [{1, 3}] * 1500, SALT, PATTERN, (1, 3), bytes(32))
    assert pv.columns == (1, 3)
    s = shares.split(pv.values, PATTERN, pv.columns, seed=bytes([9]) * 32)
    assert uniform_pvalue(s.explicit >> 8, 256) > ALPHA
    assert uniform_pvalue(s.explicit & 0xFF, 256) > ALPHA
    a = shares.sum_explicit([(s.columns, s.explicit)], PATTERN)
    b = shares.sum_seeds([(s.columns, s.seed)], PATTERN)
    total = a + b
    assert not total[:, [0, 2]].any()
    assert np.array_equal(total[:, [1, 3]], pv.values)


def test_uniform_nonzero_digits_are_uniform_on_the_nonzero_values() -> None:
    digits = uniform_nonzero(bytes(32), (200_000,), np.dtype(np.uint8))
    assert digits.min() >= 1
    assert uniform_pvalue(digits - 1, 255) > ALPHA


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_split_then_add_is_the_identity(data: st.DataObject) -> None:
    layout = Layout(Kind.COUNT, 4) if data.draw(st.booleans()) else Layout(Kind.PATTERN, 4, 2)
    cols: tuple[int, ...] = () if layout.kind is Kind.COUNT else (0, 1)
    shape = shares.share_shape(layout, cols)
    hi = 255 if layout.kind is Kind.COUNT else 65535
    flat = data.draw(
        st.lists(st.integers(0, hi), min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))
    )
    v = np.array(flat, dtype=layout.dtype).reshape(shape)
    s = shares.split(v, layout, cols, seed=data.draw(st.binary(min_size=32, max_size=32)))
    assert np.array_equal(s.explicit + expand(s.seed, shape, layout.dtype), v)


# -- bad input ------------------------------------------------------------------------------


def test_wrong_vector_lengths_and_types_are_refused() -> None:
    with pytest.raises(ReachInputError, match="shape"):
        shares.split(np.zeros(COUNT.buckets - 1, np.uint8), COUNT)
    with pytest.raises(ReachInputError, match="dtype"):
        shares.split(np.zeros(COUNT.buckets, np.int64), COUNT)
    with pytest.raises(ReachInputError, match="numpy array"):
        shares.sum_explicit([((), [0] * COUNT.buckets)], COUNT)  # type: ignore[list-item]
    with pytest.raises(ReachInputError, match="shape"):
        shares.sum_explicit([((), np.zeros(2 * COUNT.buckets, np.uint8))], COUNT)
    with pytest.raises(ReachInputError, match="columns"):
        shares.sum_explicit([((2, 1), np.zeros((PATTERN.buckets, 2), np.uint16))], PATTERN)
    with pytest.raises(ReachInputError, match="columns"):
        shares.sum_explicit([((4,), np.zeros((PATTERN.buckets, 1), np.uint16))], PATTERN)
    with pytest.raises(ReachInputError, match="shape"):
        shares.sum_explicit([((0, 1), np.zeros((PATTERN.buckets, 1), np.uint16))], PATTERN)


def test_malformed_seeds_are_refused() -> None:
    for seed in (b"", bytes(31), bytes(33), "x" * 32):
        with pytest.raises(ReachInputError, match="32 bytes"):
            shares.sum_seeds([((), seed)], COUNT)  # type: ignore[list-item]


def test_malformed_helper_vectors_are_refused_by_the_aggregator() -> None:
    plan = unsafe_noise_off(COUNT)
    good = np.zeros(COUNT.buckets, np.uint8)
    with pytest.raises(ReachInputError, match="differ in length"):
        noisy_histogram(good, np.zeros(COUNT.buckets + 1, np.uint8), COUNT, plan)
    with pytest.raises(ReachInputError, match="shorter"):
        noisy_histogram(good[:-1], good[:-1], COUNT, plan)
    with pytest.raises(ReachInputError, match="uint8"):
        noisy_histogram(good, good.astype(np.uint16), COUNT, plan)
    with pytest.raises(ReachInputError, match="shape"):
        noisy_histogram(good.reshape(-1, 1), good.reshape(-1, 1), COUNT, plan)
    with pytest.raises(ReachInputError, match="dummies allow"):
        longer = np.zeros(COUNT.buckets + 1, np.uint8)
        noisy_histogram(longer, longer, COUNT, plan)
    with pytest.raises(ReachInputError, match="another layout"):
        noisy_histogram(good, good, COUNT, unsafe_noise_off(PATTERN))


def test_bad_node_records_are_refused() -> None:
    with pytest.raises(ReachInputError, match="once"):
        buckets.count_vector([b"a", b"b", b"a"], SALT, COUNT)
    with pytest.raises(ReachInputError, match="non-empty"):
        buckets.count_vector([b""], SALT, COUNT)
    with pytest.raises(ReachInputError, match="salt"):
        buckets.count_vector([b"a"], b"short", COUNT)
    with pytest.raises(ReachInputError, match="weights"):
        buckets.count_vector([b"a"], SALT, COUNT, [256])
    with pytest.raises(ReachInputError, match="one weight"):
        buckets.count_vector([b"a"], SALT, COUNT, [1, 2])
    with pytest.raises(ReachInputError, match="visit"):
        buckets.visits_vector([b"a"], [0], 4, SALT, COUNT)
    with pytest.raises(ReachInputError, match="at least one category"):
        buckets.pattern_vector([b"a"], [set()], SALT, PATTERN)
    with pytest.raises(ReachInputError, match="outside the node's columns"):
        buckets.pattern_vector([b"a"], [{7}], SALT, PATTERN)
    with pytest.raises(ReachInputError, match="outside the node's columns"):
        buckets.pattern_vector([b"a"], [{1, 2}], SALT, PATTERN, columns=(1,))
    with pytest.raises(ReachInputError, match="columns"):
        buckets.pattern_vector([b"a"], [{1}], SALT, PATTERN, columns=(1, 0))
    # Without declared columns a node sends all of them, whatever its data hold.
    assert buckets.pattern_vector([b"a"], [{2}], SALT, PATTERN).columns == (0, 1, 2, 3)
    with pytest.raises(ReachInputError, match="count layout"):
        buckets.count_vector([b"a"], SALT, PATTERN)
    with pytest.raises(ReachInputError, match="log2_buckets"):
        Layout(Kind.COUNT, 40)
    with pytest.raises(ReachInputError, match="categories"):
        Layout(Kind.PATTERN, 10, categories=9)


def test_buckets_are_the_low_bits_of_a_salted_hash() -> None:
    people = [i.to_bytes(4, "big") for i in range(20_000)]
    b = buckets.bucket_indices(people, SALT, COUNT)
    assert b.min() >= 0 and b.max() < COUNT.buckets
    # Every bucket equally likely: 20,000 persons over 2^16 buckets, counted in 256 groups.
    assert uniform_pvalue(b >> 8, 256) > ALPHA
    other = buckets.bucket_indices(people, b"another-salt-16b", COUNT)
    assert (b == other).mean() < 0.01  # a new salt draws new buckets
    big = buckets.bucket_indices(people, SALT, Layout(Kind.COUNT, 20))
    assert np.array_equal(big & (COUNT.buckets - 1), b)  # mod m keeps the low bits
