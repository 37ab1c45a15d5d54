"""Additive secret sharing of a reach vector over Z_2^k, and the helpers' sums of shares.

A node with vector v (``buckets``) draws a fresh 32-byte seed s and sends

    helper A: v − PRG(s)   (mod 2^k, the *explicit* share, m·k/8 bytes per column)
    helper B: s            (the *seed* share, 32 bytes)

PRG is ChaCha20 (``prg.expand``). Each share alone is uniform on Z_2^k per entry, whatever v is:
PRG(s) is (computationally) uniform, and v − u for uniform u is uniform. Each helper adds up its
shares (helper B expands the seeds first); the two sums are shares of Σ v. Arithmetic is numpy's
unsigned wrap-around, i.e. exactly mod 2^k. Pattern shares carry only the columns of the node's
own categories; the helpers add them into those columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from protocol.reach.errors import ReachInputError
from protocol.reach.layout import Kind, Layout
from protocol.reach.prg import check_seed, expand, fresh_seed


@dataclass(frozen=True, slots=True)
class NodeShares:
    """What one node sends: ``explicit`` to helper A, ``seed`` to helper B, for ``columns``."""

    explicit: npt.NDArray[Any]
    seed: bytes
    columns: tuple[int, ...] = ()


def share_shape(layout: Layout, columns: tuple[int, ...]) -> tuple[int, ...]:
    layout.check_columns(columns)
    if layout.kind is Kind.COUNT:
        return (layout.buckets,)
    return (layout.buckets, len(columns))


def check_share(share: object, layout: Layout, columns: tuple[int, ...] = ()) -> None:
    """Raise ``ReachInputError`` unless ``share`` is a numpy array of the layout's exact dtype
    and shape (m,) for counts or (m, len(columns)) for patterns."""
    expected = share_shape(layout, columns)
    if not isinstance(share, np.ndarray):
        raise ReachInputError("a share is a numpy array")
    if share.dtype != layout.dtype:
        raise ReachInputError(f"a {layout.kind} share has dtype {layout.dtype}, got {share.dtype}")
    if share.shape != expected:
        raise ReachInputError(f"a share has shape {expected}, got {share.shape}")


def split(
    vector: npt.NDArray[Any],
    layout: Layout,
    columns: tuple[int, ...] = (),
    seed: bytes | None = None,
) -> NodeShares:
    """Split ``vector`` into an explicit share and a seed share (a fresh seed by default)."""
    check_share(vector, layout, columns)
    seed = fresh_seed() if seed is None else seed
    mask = expand(seed, vector.shape, layout.dtype)
    return NodeShares(np.subtract(vector, mask), seed, columns)


def _add_into(
    total: npt.NDArray[Any], share: npt.NDArray[Any], layout: Layout, columns: tuple[int, ...]
) -> None:
    if layout.kind is Kind.COUNT:
        np.add(total, share, out=total)
    else:
        for j, c in enumerate(columns):
            np.add(total[:, c], share[:, j], out=total[:, c])


def _empty(layout: Layout) -> npt.NDArray[Any]:
    return np.zeros((layout.buckets, *layout.row_shape()), dtype=layout.dtype)


def sum_explicit(
    shares: Iterable[tuple[tuple[int, ...], npt.NDArray[Any]]], layout: Layout
) -> npt.NDArray[Any]:
    """Helper A: the sum of the nodes' explicit shares, each given with its columns."""
    total = _empty(layout)
    for columns, share in shares:
        check_share(share, layout, columns)
        _add_into(total, share, layout, columns)
    return total


def sum_seeds(seeds: Iterable[tuple[tuple[int, ...], bytes]], layout: Layout) -> npt.NDArray[Any]:
    """Helper B: the sum of the nodes' seed shares, each seed expanded with ChaCha20."""
    total = _empty(layout)
    for columns, seed in seeds:
        check_seed(seed)
        shape = share_shape(layout, columns)
        _add_into(total, expand(seed, shape, layout.dtype), layout, columns)
    return total


def reconstruct(share_a: object, share_b: object, layout: Layout) -> npt.NDArray[Any]:
    """Aggregator: the sum of two (shuffled) share vectors of equal shape, mod 2^k."""
    for name, share in (("A", share_a), ("B", share_b)):
        if not isinstance(share, np.ndarray) or share.dtype != layout.dtype:
            raise ReachInputError(f"helper {name}'s vector is not a {layout.dtype} array")
        if share.ndim != 1 + len(layout.row_shape()) or share.shape[1:] != layout.row_shape():
            raise ReachInputError(f"helper {name}'s vector has the wrong shape {share.shape}")
    assert isinstance(share_a, np.ndarray) and isinstance(share_b, np.ndarray)
    if share_a.shape != share_b.shape:
        raise ReachInputError(
            f"the helpers' vectors differ in length: {share_a.shape[0]} and {share_b.shape[0]}"
        )
    if share_a.shape[0] < layout.buckets:
        raise ReachInputError("a helper's vector is shorter than the number of buckets")
    return np.add(share_a, share_b)
