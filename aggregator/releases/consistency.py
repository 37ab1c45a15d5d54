"""One release, one set of numbers: consistency post-processing across a release's tables.

Pure functions over numpy; no I/O. The method follows the US Census Bureau's TopDown
post-processing, cut down to what a release needs:

1. **Weighted least squares.** Tables of one release that count the same thing (same measure,
   period, filters, domains and contribution bounds: one *group*) share margins: visits by month
   and visits by age band have the same grand total; visits by month × artform and visits by
   month have the same monthly totals. Their noisy figures disagree, because their noise
   differs (other rounds) or because the same noise was summed in other ways. We find the
   figures closest to the noisy ones, weighting every cell by the inverse of its noise
   variance, under the constraint that every shared margin is equal in every pair of tables of
   the group: minimise (z − y)ᵀ V⁻¹ (z − y) subject to C z = d. The solution is
   z = y − V Cᵀ λ with (C V Cᵀ) λ = C y − d, solved with ``numpy.linalg.lstsq`` (C may have
   redundant rows; the system stays consistent, and a figure without noise, V = 0, is never
   moved).
2. **Non-negativity that keeps the totals.** A count cannot be negative. Cells that came out
   negative are fixed at 0 and the projection is done again over the other cells, now also
   holding the group's grand total at its weighted-least-squares value, so that clamping does
   not push the totals up; this repeats until no cell is negative (each pass fixes at least
   one more cell, so it ends).
3. **Controlled rounding.** The grand total is rounded to a whole number; then the tables are
   rounded from the fewest dimensions to the most, each table's cells by the largest-remainder
   method within the margin it shares with the tables already rounded, so that they add up
   exactly to that (already whole) margin. Every shared margin is then the same whole number
   in every table, and every table's cells add up to its total.

All of this works on the merged, noisy figures only, never on raw data, so by the
post-processing property of differential privacy it costs no privacy budget: whatever is
computed from a DP output alone is as private as that output.

With noise off (exact counts, which agree already) every step leaves the figures unchanged.
See docs/explanation/releases.md.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Key = tuple[str, ...]
Floats = NDArray[np.float64]
# A constraint that holds to this share of the group's total (or 1e-6 absolute) holds.
TOLERANCE = 1e-7


class ConsistencyError(ValueError):
    """The tables cannot be made consistent as asked; the message says which and why."""


@dataclass(frozen=True)
class NoisyTable:
    """One table before post-processing: a margin of a noisy round.

    ``group`` says which tables count the same thing (tables in one group must agree on every
    shared margin); ``dims`` are the table's dimensions and ``keys`` its cells' codes, one code
    per dimension."""

    table_id: str
    group: Hashable
    dims: tuple[str, ...]
    keys: tuple[Key, ...]
    estimates: tuple[float, ...]
    variances: tuple[float, ...]


@dataclass(frozen=True)
class ConsistentTable:
    table_id: str
    values: tuple[float, ...]  # whole numbers when rounded
    total: float  # the sum of ``values``, the same in every table of the group


def reconcile(
    tables: Sequence[NoisyTable], *, non_negative: bool = True, rounding: bool = True
) -> list[ConsistentTable]:
    """The tables' figures after the three steps of the module docstring, in input order."""
    out: dict[str, ConsistentTable] = {}
    groups: dict[Hashable, list[NoisyTable]] = {}
    for table in tables:
        groups.setdefault(table.group, []).append(table)
    for members in groups.values():
        for result in _reconcile_group(members, non_negative=non_negative, rounding=rounding):
            out[result.table_id] = result
    return [out[t.table_id] for t in tables]


def _common(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(a) & set(b)))


def _project(key: Key, dims: tuple[str, ...], onto: tuple[str, ...]) -> Key:
    return tuple(key[dims.index(d)] for d in onto)


@dataclass(frozen=True)
class Sparse:
    """A sparse matrix as (row, column, value) triples; products by ``numpy.bincount``."""

    rows: NDArray[np.int64]
    cols: NDArray[np.int64]
    vals: Floats
    shape: tuple[int, int]

    def dot(self, x: Floats) -> Floats:
        return np.bincount(self.rows, self.vals * x[self.cols], self.shape[0]).astype(np.float64)

    def tdot(self, x: Floats) -> Floats:
        return np.bincount(self.cols, self.vals * x[self.rows], self.shape[1]).astype(np.float64)

    def without(self, fixed: NDArray[np.bool_]) -> Sparse:
        """The same rows over the columns that are not ``fixed`` (those columns zeroed)."""
        keep = ~fixed[self.cols]
        return Sparse(self.rows[keep], self.cols[keep], self.vals[keep], self.shape)

    def below(self, other: Sparse) -> Sparse:
        return Sparse(
            np.concatenate([self.rows, other.rows + self.shape[0]]),
            np.concatenate([self.cols, other.cols]),
            np.concatenate([self.vals, other.vals]),
            (self.shape[0] + other.shape[0], self.shape[1]),
        )

    def dense(self) -> Floats:
        out = np.zeros(self.shape)
        np.add.at(out, (self.rows, self.cols), self.vals)
        return out


def _sparse(entries: list[tuple[int, int, float]], shape: tuple[int, int]) -> Sparse:
    rows, cols, vals = zip(*entries, strict=True) if entries else ((), (), ())
    return Sparse(
        np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), np.array(vals), shape
    )


def _constraints(members: Sequence[NoisyTable], offsets: Sequence[int], size: int) -> Sparse:
    """Rows of C: for each pair of tables and each cell of their shared margin, the margin in
    the first minus the margin in the second."""
    entries: list[tuple[int, int, float]] = []
    count = 0
    for i, j in itertools.combinations(range(len(members)), 2):
        a, b = members[i], members[j]
        shared = _common(a.dims, b.dims)
        row_of: dict[Key, int] = {}
        for table, offset, sign in ((a, offsets[i], 1.0), (b, offsets[j], -1.0)):
            for n, key in enumerate(table.keys):
                projected = _project(key, table.dims, shared)
                if projected not in row_of:
                    row_of[projected] = count + len(row_of)
                entries.append((row_of[projected], offset + n, sign))
        count += len(row_of)
    return _sparse(entries, (count, size))


# Up to this many matrix entries, (C V Cᵀ) is built and solved densely (exact least squares);
# beyond it, by preconditioned conjugate gradients on sparse products.
DENSE_LIMIT = 4_000_000


def _solve(y: Floats, v: Floats, c: Sparse, d: Floats) -> Floats:
    """argmin (z − y)ᵀ V⁻¹ (z − y) subject to C z = d, for diagonal V = diag(v)."""
    if c.shape[0] == 0:
        return y.copy()
    rhs = c.dot(y) - d
    lam: Floats
    if c.shape[0] * c.shape[1] <= DENSE_LIMIT:
        dense = c.dense()
        solution, *_ = np.linalg.lstsq((dense * v) @ dense.T, rhs, rcond=None)
        lam = np.asarray(solution, dtype=np.float64)
    else:
        lam = _conjugate_gradients(lambda x: c.dot(v * c.tdot(x)), rhs, c, v)
    return np.asarray(y - v * c.tdot(lam), dtype=np.float64)


def _conjugate_gradients(
    matvec: Callable[[Floats], Floats], rhs: Floats, c: Sparse, v: Floats
) -> Floats:
    """Solve (C V Cᵀ) λ = rhs (symmetric, positive semi-definite, consistent) with a Jacobi
    preconditioner; from λ = 0 the iterates stay in the range, so it converges there."""
    diagonal = np.bincount(c.rows, c.vals**2 * v[c.cols], c.shape[0])
    inverse = np.where(diagonal > 0, 1.0 / np.where(diagonal > 0, diagonal, 1.0), 0.0)
    lam = np.zeros(c.shape[0])
    residual = rhs.copy()
    norm = float(np.linalg.norm(rhs))
    if norm == 0:
        return lam
    pre = inverse * residual
    direction = pre.copy()
    rz = float(residual @ pre)
    for _ in range(10 * c.shape[0] + 100):
        product = matvec(direction)
        curvature = float(direction @ product)
        if curvature <= 0:
            break
        step = rz / curvature
        lam += step * direction
        residual -= step * product
        if float(np.linalg.norm(residual)) <= 1e-12 * norm:
            break
        pre = inverse * residual
        rz_next = float(residual @ pre)
        direction = pre + (rz_next / rz) * direction
        rz = rz_next
    return lam


def _reconcile_group(
    members: Sequence[NoisyTable], *, non_negative: bool, rounding: bool
) -> list[ConsistentTable]:
    sizes = [len(t.keys) for t in members]
    offsets = [0, *itertools.accumulate(sizes)][:-1]
    size = sum(sizes)
    y = np.array([e for t in members for e in t.estimates], dtype=np.float64)
    raw_v = np.array([max(float(s), 0.0) for t in members for s in t.variances])
    # A floor far below any real noise, so that a cell without noise can still absorb what
    # the constraints need when every cell of a margin is noise-free.
    v = raw_v + 1e-12 * (float(raw_v.max()) if size and raw_v.max() > 0 else 1.0)
    c = _constraints(members, offsets, size)
    z = _solve(y, v, c, np.zeros(c.shape[0]))
    # Step 1's grand total (every table of the group has the same one now).
    total = float(z[offsets[0] : offsets[0] + sizes[0]].sum()) if size else 0.0
    if non_negative:
        z = _non_negative(z, y, v, c, members, offsets, max(total, 0.0))
    if rounding:
        z = _round(z, members, offsets, non_negative=non_negative)
    _check(z, c, max(abs(total), 1.0))
    results = []
    for table, offset, n in zip(members, offsets, sizes, strict=True):
        values = tuple(float(x) for x in z[offset : offset + n])
        results.append(ConsistentTable(table.table_id, values, math.fsum(values)))
    return results


def _non_negative(
    z: Floats,
    y: Floats,
    v: Floats,
    c: Sparse,
    members: Sequence[NoisyTable],
    offsets: Sequence[int],
    total: float,
) -> Floats:
    size = len(z)
    totals = _sparse(
        [(i, offsets[i] + n, 1.0) for i, t in enumerate(members) for n in range(len(t.keys))],
        (len(members), size),
    )
    full = c.below(totals)
    target = np.concatenate([np.zeros(c.shape[0]), np.full(len(members), total)])
    fixed = np.zeros(size, dtype=bool)
    scale = max(total, 1.0)
    while (z < -TOLERANCE * scale).any() and not fixed.all():
        fixed |= z < 0
        z = np.where(fixed, 0.0, _solve(np.where(fixed, 0.0, y), v, full.without(fixed), target))
    return np.asarray(np.where(z < 0, 0.0, z), dtype=np.float64)


def largest_remainder(values: Sequence[float], target: int) -> list[int]:
    """Whole numbers that add up to ``target``, each the floor or the ceiling of its value
    adjusted to that target (the largest remainders get the ceiling; ties go to the first).

    Non-negative values are scaled to the target, so they stay non-negative; values of either
    sign (no non-negativity asked) are shifted evenly instead."""
    if not values:
        return []
    whole = math.fsum(values)
    if min(values) >= 0 and whole > 0 and target >= 0:
        adjusted = [x * target / whole for x in values]
    else:
        adjusted = [x + (target - whole) / len(values) for x in values]
    floors = [math.floor(x) for x in adjusted]
    short = target - sum(floors)
    order = sorted(range(len(adjusted)), key=lambda i: (-(adjusted[i] - floors[i]), i))
    for i in order[: max(short, 0)]:
        floors[i] += 1
    return floors


def _margin_values(
    keys: Sequence[Key], dims: tuple[str, ...], values: Sequence[float], onto: tuple[str, ...]
) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for key, value in zip(keys, values, strict=True):
        projected = _project(key, dims, onto)
        out[projected] = out.get(projected, 0.0) + value
    return out


def _round(
    z: Floats, members: Sequence[NoisyTable], offsets: Sequence[int], *, non_negative: bool
) -> Floats:
    """Controlled rounding: the total first, then each table (fewest dimensions first) within
    the largest margin it shares with the tables already rounded."""
    fixed: dict[tuple[str, ...], dict[Key, int]] = {}
    out = z.copy()
    order = sorted(range(len(members)), key=lambda i: (len(members[i].dims), i))
    for i in order:
        table = members[i]
        values = [float(x) for x in z[offsets[i] : offsets[i] + len(table.keys)]]
        if not fixed:
            whole = math.floor(math.fsum(values) + 0.5)
            fixed[()] = {(): max(whole, 0) if non_negative else whole}
        known = [s for s in fixed if set(s) <= set(table.dims)]
        widest = [s for s in known if not any(set(s) < set(o) for o in known)]
        if len(widest) > 1:
            raise ConsistencyError(
                f"table {table.table_id!r} (by {', '.join(table.dims)}) would have to add up to "
                f"several breakdowns that do not nest ({'; '.join(', '.join(s) for s in widest)})"
                "; publish it without the tables of those breakdowns, or with one of them only"
            )
        onto = widest[0]
        cells: dict[Key, list[int]] = {}
        for n, key in enumerate(table.keys):
            cells.setdefault(_project(key, table.dims, onto), []).append(n)
        rounded = [0] * len(values)
        for margin_key, members_at in cells.items():
            target = fixed[onto].get(margin_key, 0)
            for n, whole in zip(
                members_at, largest_remainder([values[n] for n in members_at], target), strict=True
            ):
                rounded[n] = whole
        out[offsets[i] : offsets[i] + len(values)] = rounded
        for r in range(len(table.dims) + 1):
            for subset in itertools.combinations(sorted(table.dims), r):
                margin = _margin_values(table.keys, table.dims, rounded, subset)
                fixed.setdefault(subset, {k: round(x) for k, x in margin.items()})
    return out


def _check(z: Floats, c: Sparse, scale: float) -> None:
    if c.shape[0] and float(np.abs(c.dot(z)).max()) > max(TOLERANCE * scale, 1e-6):
        raise ConsistencyError("the tables could not be made consistent")  # a bug, not input
