"""Consistency post-processing across a release's tables: weighted least squares, non-negativity
that keeps the totals, and controlled rounding (aggregator.releases.consistency)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.releases import consistency
from aggregator.releases.consistency import (
    ConsistencyError,
    NoisyTable,
    largest_remainder,
    reconcile,
)

CODES = {"a": ("a1", "a2", "a3"), "b": ("b1", "b2"), "c": ("c1", "c2", "c3", "c4")}
DIMS = ("a", "b", "c")
# Sets of tables whose shared breakdowns nest (what controlled rounding by largest remainders
# can keep equal); the same dimensions twice stand for two rounds asking the same breakdown.
FAMILIES = (
    (("a",), ("b",), ("c",)),
    (("a",), ("a", "b")),
    (("a", "b"), ("b",), ("c",)),
    (("a", "b"), ("a", "c")),
    (("a", "b", "c"), ("a",), ("a", "b")),
    (("a", "b"), ("a", "b")),
    (("c",),),
)


def cells(dims: tuple[str, ...]) -> list[tuple[str, ...]]:
    return list(itertools.product(*(CODES[d] for d in dims)))


def margin(cube: dict[tuple[str, ...], float], dims: tuple[str, ...]) -> list[float]:
    out = dict.fromkeys(cells(dims), 0.0)
    for key, value in cube.items():
        out[tuple(key[DIMS.index(d)] for d in dims)] += value
    return list(out.values())


def tables(
    cube: dict[tuple[str, ...], float], family: tuple[tuple[str, ...], ...],
    noise: list[int], sds: list[float],
) -> list[NoisyTable]:  # fmt: skip
    out = []
    position = 0
    for n, dims in enumerate(family):
        exact = margin(cube, dims)
        noisy = [x + noise[(position + i) % len(noise)] for i, x in enumerate(exact)]
        position += len(exact)
        sd = sds[n % len(sds)]
        out.append(
            NoisyTable(f"t{n}", "g", dims, tuple(cells(dims)), tuple(noisy), (sd**2,) * len(noisy))
        )
    return out


def shared_margins_agree(given_tables: list[NoisyTable], values: list[tuple[float, ...]]) -> None:
    for (t1, v1), (t2, v2) in itertools.combinations(zip(given_tables, values, strict=True), 2):
        shared = tuple(d for d in DIMS if d in t1.dims and d in t2.dims)
        for table, vals, other in ((t1, v1, t2), (t2, v2, t1)):
            del other
            sums: dict[tuple[str, ...], float] = {}
            for key, value in zip(table.keys, vals, strict=True):
                k = tuple(key[table.dims.index(d)] for d in shared)
                sums[k] = sums.get(k, 0) + value
            if table is t1:
                first = sums
            else:
                assert sums == first, (t1.dims, t2.dims, shared)


cube_values = st.lists(st.integers(0, 2_000), min_size=24, max_size=24)


@settings(max_examples=150, deadline=None)
@given(
    cube_values,
    st.sampled_from(FAMILIES),
    st.lists(st.integers(-300, 300), min_size=1, max_size=60),
    st.lists(st.floats(0.5, 200), min_size=1, max_size=3),
)
def test_every_shared_margin_is_equal_and_every_figure_a_non_negative_whole_number(
    values: list[int], family: tuple[tuple[str, ...], ...], noise: list[int], sds: list[float]
) -> None:
    cube = dict(zip(cells(DIMS), map(float, values), strict=True))
    given_tables = tables(cube, family, noise, sds)
    result = reconcile(given_tables)
    out = [r.values for r in result]
    for vals in out:
        assert all(v >= 0 and v == int(v) for v in vals)
    shared_margins_agree(given_tables, out)
    totals = {r.total for r in result}
    assert len(totals) == 1  # one grand total in every table
    for r in result:
        assert r.total == math.fsum(r.values)


@settings(max_examples=100, deadline=None)
@given(cube_values, st.sampled_from(FAMILIES), st.lists(st.floats(0, 200), min_size=1, max_size=3))
def test_without_noise_the_exact_figures_come_back_unchanged(
    values: list[int], family: tuple[tuple[str, ...], ...], sds: list[float]
) -> None:
    cube = dict(zip(cells(DIMS), map(float, values), strict=True))
    given_tables = tables(cube, family, [0], sds)
    for result, table in zip(reconcile(given_tables), given_tables, strict=True):
        assert result.values == table.estimates
        assert result.total == sum(table.estimates)


def test_the_weights_are_the_inverse_noise_variances() -> None:
    # One figure asked twice: 100 with variance 1 and 110 with variance 4 → (100 + 110/4) / 1.25.
    precise = NoisyTable("p", "g", ("a",), (("a1",),), (100.0,), (1.0,))
    rough = NoisyTable("r", "g", ("a",), (("a1",),), (110.0,), (4.0,))
    both = reconcile([precise, rough], non_negative=False, rounding=False)
    assert [r.values for r in both] == [(pytest.approx(102.0),), (pytest.approx(102.0),)]
    # Tables in other groups are left alone.
    other = NoisyTable("o", "h", ("a",), (("a1",),), (110.0,), (4.0,))
    assert reconcile([precise, other], rounding=False)[1].values == (110.0,)


def test_a_table_summed_from_the_same_round_keeps_its_breakdown() -> None:
    # Visits by month and their total from the same noisy cells: already consistent.
    by_a = NoisyTable("a", "g", ("a",), (("a1",), ("a2",)), (40.0, 60.0), (9.0, 9.0))
    by_ab = NoisyTable(
        "ab", "g", ("a", "b"), (("a1", "b1"), ("a1", "b2"), ("a2", "b1"), ("a2", "b2")),
        (10.0, 30.0, 25.0, 35.0), (4.5,) * 4,
    )  # fmt: skip
    first, second = reconcile([by_a, by_ab])
    assert first.values == (40.0, 60.0) and second.values == (10.0, 30.0, 25.0, 35.0)


def test_clamping_at_zero_keeps_the_total() -> None:
    table = NoisyTable(
        "t", "g", ("c",), tuple(cells(("c",))), (-30.0, -10.0, 50.0, 90.0), (25.0,) * 4
    )
    (result,) = reconcile([table], rounding=False)
    assert all(v >= 0 for v in result.values)
    assert result.total == pytest.approx(100.0)  # the noisy total, not 140 from clipping alone
    (rounded,) = reconcile([table])
    assert rounded.total == 100 and all(v == int(v) >= 0 for v in rounded.values)


def test_largest_remainders_add_up_to_the_target() -> None:
    assert largest_remainder([1.5, 1.5, 1.0], 4) == [2, 1, 1]
    assert largest_remainder([0.2, 0.3, 0.5], 1) == [0, 0, 1]
    assert largest_remainder([0.0, 0.0], 3) == [2, 1]
    assert largest_remainder([], 0) == []


def test_breakdowns_that_do_not_nest_are_refused_with_a_reason() -> None:
    family = (("a",), ("b",), ("a", "b"))
    cube = dict.fromkeys(cells(DIMS), 5.0)
    with pytest.raises(ConsistencyError, match=r"table 't2' \(by a, b\)"):
        reconcile(tables(cube, family, [1, -1, 2], [3.0]))


@pytest.mark.parametrize("family", FAMILIES)
def test_large_groups_solved_iteratively_agree_with_the_exact_solution(
    family: tuple[tuple[str, ...], ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    cube = {key: float((7 * n) % 23) for n, key in enumerate(cells(DIMS))}
    noise = [(-1) ** n * (n * 37 % 41) for n in range(60)]
    given_tables = tables(cube, family, noise, [3.0, 40.0, 9.0])
    exact = reconcile(given_tables, rounding=False)
    monkeypatch.setattr(consistency, "DENSE_LIMIT", 0)  # sparse conjugate gradients
    iterative = reconcile(given_tables, rounding=False)
    for a, b in zip(exact, iterative, strict=True):
        assert b.values == pytest.approx(a.values, abs=1e-6)
    rounded = reconcile(given_tables)
    shared_margins_agree(given_tables, [r.values for r in rounded])


@settings(max_examples=60, deadline=None)
@given(cube_values, st.sampled_from(FAMILIES), st.lists(st.integers(-300, 300), min_size=1))
def test_without_non_negativity_negative_figures_stay_and_margins_still_agree(
    values: list[int], family: tuple[tuple[str, ...], ...], noise: list[int]
) -> None:
    cube = dict(zip(cells(DIMS), (v / 100 for v in values), strict=True))  # small: negatives
    given_tables = tables(cube, family, noise, [50.0])
    result = reconcile(given_tables, non_negative=False)
    shared_margins_agree(given_tables, [r.values for r in result])
    assert all(v == int(v) for r in result for v in r.values)
    unrounded = reconcile(given_tables, non_negative=False, rounding=False)
    assert abs(result[0].total - unrounded[0].total) < 1


def test_largest_remainders_of_either_sign() -> None:
    assert largest_remainder([-2.5, 1.0, 0.5], -1) == [-2, 1, 0]
    assert sum(largest_remainder([-0.4, -0.4, 3.3], 2)) == 2
