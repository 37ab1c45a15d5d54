"""Helper side: secret-shared dummy entries and the common secret shuffle.

Helpers A (index 0) and B (index 1) share a 32-byte secret κ that the aggregator never learns.
After summing its shares (``shares.sum_explicit`` / ``sum_seeds``), helper j

1. builds its own dummy rows W_j: D_v^j entries of each value v (``noise.draw_dummy_counts``); a
   pattern value is a row with a uniform non-zero digit in each category of the pattern, so a
   dummy looks exactly like a real bucket showing the same categories;
2. secret-shares them with the mask R_j = PRG(HKDF(κ, "dummies-j", round)): helper j holds
   W_j − R_j, the other helper computes R_j itself and only needs the *number* of rows T_j, which
   the helpers tell each other (T_j = Σ_v D_v^j is a function of the released histogram anyway,
   whose total is the public m + T_A + T_B);
3. concatenates [sum share, block A, block B] and applies the permutation π = argsort of a
   ChaCha20 keystream under HKDF(κ, "shuffle", round); both helpers get the same π.

The aggregator receives both permuted vectors. Their sum is π([Σv, W_A, W_B]): the multiset of
bucket values and dummies in an order that is uniformly random to anyone without κ.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from protocol.reach.errors import ReachInputError
from protocol.reach.layout import Kind, Layout
from protocol.reach.prg import derive, expand, fresh_seed, uniform_nonzero

HELPER_A = 0
HELPER_B = 1


def dummy_rows(
    counts: npt.NDArray[np.int64], layout: Layout, seed: bytes | None = None
) -> npt.NDArray[Any]:
    """The entries of one helper's dummies: ``counts[v]`` entries of each value v."""
    counts = np.asarray(counts)
    if counts.shape != (layout.values,) or (counts.size > 0 and counts.min() < 0):
        raise ReachInputError(f"dummy counts are {layout.values} non-negative integers")
    values = np.repeat(np.arange(layout.values, dtype=np.int64), counts.astype(np.int64))
    if layout.kind is Kind.COUNT:
        return values.astype(np.uint8)
    digits = uniform_nonzero(seed or fresh_seed(), (values.size, layout.categories), layout.dtype)
    bits = (values[:, None] >> np.arange(layout.categories)) & 1
    return np.where(bits == 1, digits, 0).astype(layout.dtype)


def _mask(
    secret: bytes, round_id: bytes, owner: int, rows: int, layout: Layout
) -> npt.NDArray[Any]:
    key = derive(secret, b"dummies-" + bytes([owner]), round_id)
    return expand(key, (rows, *layout.row_shape()), layout.dtype)


def permutation(secret: bytes, round_id: bytes, size: int) -> npt.NDArray[np.int64]:
    """The common secret shuffle: the order of a ChaCha20 keystream of 64-bit keys."""
    keys = expand(derive(secret, b"shuffle", round_id), (size,), np.dtype(np.uint64))
    return np.argsort(keys, kind="stable").astype(np.int64)


def helper_output(
    summed: npt.NDArray[Any],
    own_dummies: npt.NDArray[Any],
    other_dummy_rows: int,
    helper: int,
    secret: bytes,
    round_id: bytes,
    layout: Layout,
) -> npt.NDArray[Any]:
    """Helper ``helper``'s shuffled vector for the aggregator.

    ``summed``: its sum of the nodes' shares; ``own_dummies``: its ``dummy_rows``;
    ``other_dummy_rows``: the number of dummy rows the other helper announced.
    """
    if helper not in (HELPER_A, HELPER_B):
        raise ReachInputError("helper is 0 (A) or 1 (B)")
    shape = (layout.buckets, *layout.row_shape())
    if not isinstance(summed, np.ndarray) or summed.shape != shape or summed.dtype != layout.dtype:
        raise ReachInputError(f"the summed share must be a {layout.dtype} array of shape {shape}")
    if own_dummies.dtype != layout.dtype or own_dummies.shape[1:] != layout.row_shape():
        raise ReachInputError("dummy rows do not fit the layout")
    if other_dummy_rows < 0:
        raise ReachInputError("a dummy row count is non-negative")
    rows = {helper: own_dummies.shape[0], 1 - helper: other_dummy_rows}
    blocks = [summed]
    for owner in (HELPER_A, HELPER_B):
        mask = _mask(secret, round_id, owner, rows[owner], layout)
        blocks.append(np.subtract(own_dummies, mask) if owner == helper else mask)
    full = np.concatenate(blocks)
    return full[permutation(secret, round_id, full.shape[0])]
