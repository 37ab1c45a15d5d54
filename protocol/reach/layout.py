"""The shape of a reach vector: how many buckets, which ring, which values the histogram has.

Two kinds of vector, both indexed by bucket b = H(pseudonym) mod m (``buckets``):

* **count** (ring Z_2^8, one byte per bucket): each person adds a small weight to its bucket,
  1 for presence (reach and the number of institutions per person) or the capped number of
  visits. Over the nodes the bucket's value is the sum of the weights of the persons in it,
  mod 256. Its histogram has 256 values.
* **pattern** (ring Z_2^16 per category, up to 8 categories): a person's bucket gets, in the digit
  of each category it visited at this node, an independent uniform element of Z_2^16. A sum of
  one or more independent uniform elements is uniform, so over the nodes a digit is 0 where no
  institution of that category saw anyone of the bucket and uniform otherwise (0 only with
  probability 2⁻¹⁶), whatever the number of institutions. The aggregator reads the bucket's set
  of categories as the bits of its non-zero digits: 2^C possible values.

A bit per category with ordinary addition would carry (two theatres set the theatre bit twice),
and per-category counts would make the value domain, which must be covered by dummies, far too
large; the uniform digit makes the sum an OR without any computation on shares
(docs/explanation/reach-privacy.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from protocol.reach.errors import ReachInputError

DEFAULT_LOG2_BUCKETS = 24
MIN_LOG2_BUCKETS = 4
MAX_LOG2_BUCKETS = 28
MAX_CATEGORIES = 8


class Kind(StrEnum):
    COUNT = "count"
    PATTERN = "pattern"


@dataclass(frozen=True, slots=True)
class Layout:
    """A reach vector's layout: kind, m = 2^log2_buckets buckets, categories (pattern only)."""

    kind: Kind
    log2_buckets: int = DEFAULT_LOG2_BUCKETS
    categories: int = 0

    def __post_init__(self) -> None:
        if not MIN_LOG2_BUCKETS <= self.log2_buckets <= MAX_LOG2_BUCKETS:
            raise ReachInputError(
                f"log2_buckets must be in [{MIN_LOG2_BUCKETS}, {MAX_LOG2_BUCKETS}], "
                f"got {self.log2_buckets}"
            )
        if self.kind is Kind.COUNT and self.categories != 0:
            raise ReachInputError("a count vector has no categories")
        if self.kind is Kind.PATTERN and not 1 <= self.categories <= MAX_CATEGORIES:
            raise ReachInputError(
                f"a pattern vector has 1 to {MAX_CATEGORIES} categories, got {self.categories}"
            )

    @property
    def buckets(self) -> int:
        return 1 << self.log2_buckets

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(np.uint8) if self.kind is Kind.COUNT else np.dtype(np.uint16)

    @property
    def values(self) -> int:
        """Size of the histogram's domain: every value a bucket can show, each gets dummies."""
        return 256 if self.kind is Kind.COUNT else 1 << self.categories

    def row_shape(self, columns: int | None = None) -> tuple[int, ...]:
        """Shape of ``rows`` entries: (rows,) for counts, (rows, columns) for patterns."""
        if self.kind is Kind.COUNT:
            return ()
        return (self.categories if columns is None else columns,)

    def check_columns(self, columns: tuple[int, ...]) -> None:
        """A node's pattern share covers ``columns``: distinct, sorted category indices."""
        if self.kind is Kind.COUNT:
            if columns:
                raise ReachInputError("a count share has no columns")
            return
        if not columns:
            raise ReachInputError("a pattern share needs at least one category column")
        if list(columns) != sorted(set(columns)) or not all(
            0 <= c < self.categories for c in columns
        ):
            raise ReachInputError(
                f"category columns must be distinct, sorted and in [0, {self.categories})"
            )
