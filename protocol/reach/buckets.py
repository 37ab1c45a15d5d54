"""Node side: from per-person records to the bucket vector a node secret-shares.

A person is a sector pseudonym (bytes). Its bucket is

    b = BLAKE2b-64(pseudonym; salt = round salt, person = "pd-reach-bkt-v1") mod m,

with m = 2^log2_buckets, so that ``mod m`` keeps the hash's low bits. The personalisation string
separates this hash from every other use of the pseudonym, and the round's 16-byte salt (the same
for all nodes of a round) draws fresh collisions for every round. Nodes must agree on the bucket
of a person; nothing else about the hash needs to be secret (docs/explanation/reach-privacy.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from protocol.reach.errors import ReachInputError
from protocol.reach.layout import Kind, Layout
from protocol.reach.prg import expand, fresh_seed

SALT_BYTES = 16
_PERSON = b"pd-reach-bkt-v1"
MAX_WEIGHT = 255


def bucket_indices(pseudonyms: Sequence[bytes], salt: bytes, layout: Layout) -> npt.NDArray[Any]:
    """Each pseudonym's bucket (int64). Pseudonyms must be distinct non-empty bytes."""
    if not isinstance(salt, bytes) or len(salt) != SALT_BYTES:
        raise ReachInputError(f"the round salt is exactly {SALT_BYTES} bytes")
    for p in pseudonyms:
        if not isinstance(p, bytes) or not p:
            raise ReachInputError("a pseudonym is non-empty bytes")
    if len(set(pseudonyms)) != len(pseudonyms):
        raise ReachInputError("each person appears once: merge a person's records first")
    digests = b"".join(
        hashlib.blake2b(p, digest_size=8, salt=salt, person=_PERSON).digest() for p in pseudonyms
    )
    hashes = np.frombuffer(digests, dtype="<u8")
    return (hashes & np.uint64(layout.buckets - 1)).astype(np.int64)


def count_vector(
    pseudonyms: Sequence[bytes],
    salt: bytes,
    layout: Layout,
    weights: Sequence[int] | None = None,
) -> npt.NDArray[np.uint8]:
    """Σ of the persons' weights per bucket, mod 256: presence (all weights 1) by default."""
    if layout.kind is not Kind.COUNT:
        raise ReachInputError("count_vector needs a count layout")
    idx = bucket_indices(pseudonyms, salt, layout)
    if weights is None:
        counts = np.bincount(idx, minlength=layout.buckets)
    else:
        w = np.asarray(weights, dtype=np.int64)
        if w.shape != idx.shape:
            raise ReachInputError("one weight per pseudonym")
        if w.size and (w.min() < 1 or w.max() > MAX_WEIGHT):
            raise ReachInputError(f"weights are in [1, {MAX_WEIGHT}]")
        counts = np.bincount(idx, weights=w, minlength=layout.buckets).astype(np.int64)
    return (counts & 0xFF).astype(np.uint8)


def visits_vector(
    pseudonyms: Sequence[bytes], visits: Sequence[int], cap: int, salt: bytes, layout: Layout
) -> npt.NDArray[np.uint8]:
    """Each person weighs min(visits, cap): the sector's capped visits per person."""
    if not 1 <= cap <= MAX_WEIGHT:
        raise ReachInputError(f"the visit cap is in [1, {MAX_WEIGHT}]")
    if any(v < 1 for v in visits):
        raise ReachInputError("a person in the data has at least one visit")
    return count_vector(pseudonyms, salt, layout, [min(v, cap) for v in visits])


@dataclass(frozen=True, slots=True)
class PatternVector:
    """A node's pattern vector: one uniform Z_2^16 digit per (bucket, category it saw)."""

    columns: tuple[int, ...]
    values: npt.NDArray[np.uint16]  # shape (m, len(columns))


def pattern_vector(
    pseudonyms: Sequence[bytes],
    categories: Sequence[Iterable[int]],
    salt: bytes,
    layout: Layout,
    columns: tuple[int, ...] | None = None,
    seed: bytes | None = None,
) -> PatternVector:
    """Digits for the categories each person visited at this node.

    ``columns``: the categories this node sends, fixed before looking at the data (its public
    disciplines, say), so that which columns it sends reveals nothing; all of the layout's by
    default. A person in a category outside them is an error. ``seed`` (fresh by default)
    drives the uniform digits."""
    if layout.kind is not Kind.PATTERN:
        raise ReachInputError("pattern_vector needs a pattern layout")
    if len(categories) != len(pseudonyms):
        raise ReachInputError("one category set per pseudonym")
    sets = [frozenset(c) for c in categories]
    if any(not s for s in sets):
        raise ReachInputError("each person has at least one category")
    columns = tuple(range(layout.categories)) if columns is None else columns
    layout.check_columns(columns)
    if not set().union(*sets) <= set(columns):
        raise ReachInputError("a person has a category outside the node's columns")
    idx = bucket_indices(pseudonyms, salt, layout)
    digits = expand(seed or fresh_seed(), (len(sets), len(columns)), layout.dtype)
    values = np.zeros((layout.buckets, len(columns)), dtype=np.uint16)
    for j, c in enumerate(columns):
        rows = np.fromiter((c in s for s in sets), dtype=bool, count=len(sets))
        # A sum of independent uniform digits is uniform, so where two persons of this node
        # share a bucket, either digit will do: the later one is kept.
        values[idx[rows], j] = digits[rows, j]
    return PatternVector(columns, values)
