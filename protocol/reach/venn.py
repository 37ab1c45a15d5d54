"""Aggregator side: overlap between categories of institutions, from a pattern histogram.

A bucket shows the set of categories (pattern) of all its persons together: the union of their
patterns. With λ = n/m persons per bucket (Poisson) and π_P the share of persons of pattern P,
the share of buckets whose pattern lies within a set S of categories is

    G(S) = Σ_{Q ⊆ S} g_Q = exp(−λ·(1 − Σ_{∅≠P⊆S} π_P)),

so the number of persons whose categories all lie in S is N(⊆S) = m·ln(G(S)/g_∅): linear
counting applied to every subset of categories at once. Möbius inversion over subsets turns
these into the persons of each exact pattern; the figures are linear in N(⊆·):

* ``exactly(P)`` = Σ_{S⊆P} (−1)^{|P∖S|} N(⊆S),
* ``any_of(A)``  = n − N(⊆ all∖A)   (reach of the categories A together; n = N(⊆ all)),
* ``all_of(A)``  = Σ_{T⊆A} (−1)^{|T|} N(⊆ all∖T)   (persons seen in every category of A).

Intervals as in ``estimate``: the fixed-population covariance of the pattern histogram
(Poissonised, conditioned on the pattern counts; d_P[Q] = P(bucket shows Q after adding a person
of pattern P) − g_Q) plus the noise, through the exact Jacobian of N(⊆·).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from protocol.reach.errors import ReachInputError
from protocol.reach.estimate import Interval
from protocol.reach.layout import MAX_CATEGORIES


def _subset_matrix(size: int) -> npt.NDArray[np.float64]:
    """Z[S, Q] = 1 if Q ⊆ S."""
    s = np.arange(size)[:, None]
    q = np.arange(size)[None, :]
    out: npt.NDArray[np.float64] = ((q & ~s) == 0).astype(np.float64)
    return out


def _popcount(x: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return np.array([bin(int(v)).count("1") for v in x.ravel()], dtype=np.int64).reshape(x.shape)


@dataclass(frozen=True)
class Venn:
    """Overlap estimates over ``categories`` categories from a noisy pattern histogram."""

    categories: int
    buckets: int
    histogram: npt.NDArray[np.float64]
    noise_variance: float
    within: npt.NDArray[np.float64] = field(init=False, repr=False)  # N(⊆S) for every S
    _jac: npt.NDArray[np.float64] = field(init=False, repr=False)
    _cov: npt.NDArray[np.float64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        size = 1 << self.categories
        if not 1 <= self.categories <= MAX_CATEGORIES:
            raise ReachInputError(f"a Venn has 1 to {MAX_CATEGORIES} categories")
        h = np.asarray(self.histogram, dtype=np.float64)
        if h.shape != (size,):
            raise ReachInputError(
                f"a pattern histogram over {self.categories} categories has "
                f"{size} values, got shape {h.shape}"
            )
        if self.noise_variance < 0 or self.buckets < 1:
            raise ReachInputError("buckets must be positive and the noise variance non-negative")
        zeta = _subset_matrix(size)
        totals = zeta @ h
        if not (h[0] > 0 and np.all(totals > 0)):
            raise ReachInputError("no empty bucket is left: choose more buckets")
        m = self.buckets
        within = m * (np.log(totals) - np.log(h[0]))
        jac = m * (zeta / totals[:, None])
        jac[:, 0] -= m / h[0]
        # Sampling covariance for the fixed population (see the module docstring).
        g = np.clip(h, 0, None) / m
        signs = (-1.0) ** (
            _popcount(np.arange(size)[:, None]) - _popcount(np.arange(size)[None, :])
        )
        exact = (zeta * signs) @ within
        mu = np.clip(exact, 0, None)
        mu[0] = 0.0
        after = np.zeros((size, size))
        for p in range(1, size):
            np.add.at(after[p], np.arange(size) | p, g)
        d = after - g[None, :]
        cov = m * (np.diag(g) - np.outer(g, g)) - d.T @ (mu[:, None] * d)
        cov += self.noise_variance * np.eye(size)
        object.__setattr__(self, "histogram", h)
        object.__setattr__(self, "within", within)
        object.__setattr__(self, "_jac", jac)
        object.__setattr__(self, "_cov", cov)

    @property
    def all_categories(self) -> int:
        return (1 << self.categories) - 1

    def _mask(self, categories: Iterable[int]) -> int:
        mask = 0
        for c in categories:
            if not 0 <= c < self.categories:
                raise ReachInputError(f"category {c} is not in [0, {self.categories})")
            mask |= 1 << c
        if mask == 0:
            raise ReachInputError("name at least one category")
        return mask

    def figure(self, weights: npt.NDArray[np.float64]) -> Interval:
        """Σ_S weights[S]·N(⊆S) with its 95% interval (any linear figure of the Venn)."""
        grad = weights @ self._jac
        var = max(float(grad @ self._cov @ grad), 0.0)
        return Interval(float(weights @ self.within), float(np.sqrt(var)))

    def _unit(self, s: int) -> npt.NDArray[np.float64]:
        w = np.zeros(1 << self.categories)
        w[s] = 1.0
        return w

    def reach(self) -> Interval:
        """Persons seen in any category."""
        return self.figure(self._unit(self.all_categories))

    def any_of(self, categories: Iterable[int]) -> Interval:
        """Persons seen in at least one of ``categories``."""
        a = self._mask(categories)
        return self.figure(self._unit(self.all_categories) - self._unit(self.all_categories & ~a))

    def all_of(self, categories: Iterable[int]) -> Interval:
        """Persons seen in every one of ``categories`` (their overlap)."""
        a = self._mask(categories)
        w = np.zeros(1 << self.categories)
        t = a
        while True:  # every subset T of A
            w[self.all_categories & ~t] += (-1.0) ** bin(t).count("1")
            if t == 0:
                break
            t = (t - 1) & a
        return self.figure(w)

    def exactly(self, categories: Iterable[int]) -> Interval:
        """Persons seen in exactly ``categories`` and no other."""
        p = self._mask(categories)
        w = np.zeros(1 << self.categories)
        s = p
        while True:  # every subset S of P
            w[s] += (-1.0) ** (bin(p).count("1") - bin(s).count("1"))
            if s == 0:
                break
            s = (s - 1) & p
        return self.figure(w)


def venn(hist: npt.ArrayLike, categories: int, buckets: int, noise_variance: float) -> Venn:
    """The overlap estimates from a noisy pattern histogram (``histogram.noisy_histogram``)."""
    return Venn(categories, buckets, np.asarray(hist, dtype=np.float64), noise_variance)
