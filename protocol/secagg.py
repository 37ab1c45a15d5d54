"""Secure aggregation (design §9): the arithmetic and cryptography both sides share.

The protocol is Bonawitz et al. 2017 ("Practical Secure Aggregation for Privacy-Preserving Machine
Learning", CCS'17), with the aggregator as the relaying server and our signed envelopes as its
authenticated channel. Each node ``i`` of a round holds two ephemeral X25519 key pairs: ``c`` (for
encrypting Shamir shares to its peers) and ``s`` (for pairwise masks). It submits

    y_i = x_i + e_i + PRG(b_i) + Σ_{j>i} PRG(s_ij) − Σ_{j<i} PRG(s_ij)      (mod 2⁶⁴, per entry)

where ``x_i`` is its exact vector, ``e_i`` its share of the discrete Gaussian noise, ``b_i`` a
random self-mask seed and ``s_ij`` the pair seed both ends derive from X25519(s_i, s_j) with
HKDF, bound to the round and the pair. Summed over the nodes that submitted, the pair masks
cancel; the aggregator removes the self-masks from ``b_i`` it reconstructs from Shamir shares
held by the other nodes, and the pair masks of nodes that dropped out after sharing from their
``s`` private keys, likewise reconstructed. Each live node reveals, per peer, the share of
``b`` (peer alive) or of ``s`` (peer dropped), never both, so a lie about who dropped out
cannot unmask anyone.

Only primitives from ``cryptography`` (X25519, HKDF-SHA256, ChaCha20, ChaCha20-Poly1305) and the
``shamirs`` package (splitting, with ``secrets``) are used; reconstruction is Lagrange
interpolation at zero over the same prime field, checked against ``shamirs.interpolate`` in the
tests. docs/reference/secure-aggregation-vectors.md publishes test vectors for all of it.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import shamirs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

VERSION = "publieksdata-secagg-v1"
MODULUS_BITS = 64
# Shamir shares live in GF(p) with the Mersenne prime 2⁵²¹−1, which holds any 32-byte secret.
PRIME = 2**521 - 1
SHARE_BYTES = 66
_HALF = 1 << 63
_NONCE = b"\x00" * 16  # every ChaCha20 key below is used for exactly one stream


class SecAggError(ValueError):
    """A secure-aggregation input is malformed (wrong length, bad ciphertext, out of range)."""


# --- vectors mod 2⁶⁴ ------------------------------------------------------------------------


def encode(values: Sequence[int]) -> np.ndarray:
    """Signed integers as two's complement uint64 (entries must lie in [−2⁶³, 2⁶³))."""
    array = np.array([int(v) for v in values], dtype=object)
    if any(not -_HALF <= int(v) < _HALF for v in array):
        raise SecAggError("a value does not fit in 64-bit two's complement")
    return np.array([int(v) % (1 << 64) for v in array], dtype=np.uint64)


def decode(vector: np.ndarray) -> list[int]:
    """uint64 two's complement back to signed Python integers."""
    return [int(v) - (1 << 64) if int(v) >= _HALF else int(v) for v in vector.tolist()]


def to_text(vector: np.ndarray) -> str:
    """A uint64 vector as base64url of its little-endian bytes (how it travels)."""
    return base64.urlsafe_b64encode(vector.astype("<u8").tobytes()).rstrip(b"=").decode("ascii")


def from_text(text: str, length: int) -> np.ndarray:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise SecAggError("the vector is not base64url") from None
    if len(raw) != 8 * length:
        raise SecAggError(f"the vector has {len(raw) // 8} entries; expected {length}")
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64)


def prg(seed: bytes, length: int) -> np.ndarray:
    """``length`` uint64 words of the ChaCha20 key stream under the 32-byte ``seed``."""
    if len(seed) != 32:
        raise SecAggError("a mask seed has 32 bytes")
    encryptor = Cipher(algorithms.ChaCha20(seed, _NONCE), mode=None).encryptor()
    stream = encryptor.update(b"\x00" * (8 * length))
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64)


# --- keys and derivations -------------------------------------------------------------------


def _hkdf(secret: bytes, info: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info.encode()).derive(secret)


def new_private_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def private_bytes(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def private_from_bytes(raw: bytes) -> X25519PrivateKey:
    if len(raw) != 32:
        raise SecAggError("an X25519 private key has 32 bytes")
    return X25519PrivateKey.from_private_bytes(raw)


def public_text(key: X25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def public_from_text(text: str) -> X25519PublicKey:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return X25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise SecAggError("not an X25519 public key") from None


def agree(private: X25519PrivateKey, peer_public: str) -> bytes:
    peer = public_from_text(peer_public)
    try:
        return private.exchange(peer)
    except ValueError:  # an all-zero (low-order) shared secret
        raise SecAggError("the peer's key gives a degenerate shared secret") from None


def pair_seed(shared: bytes, round_id: str, a: str, b: str) -> bytes:
    """The mask seed of the pair (a, b) in this round; the same from either end."""
    low, high = sorted((a, b))
    return _hkdf(shared, f"{VERSION}|pair-mask|{round_id}|{low}|{high}")


def self_seed(b: bytes, round_id: str, node: str) -> bytes:
    return _hkdf(b, f"{VERSION}|self-mask|{round_id}|{node}")


def share_key(shared: bytes, round_id: str, a: str, b: str) -> bytes:
    low, high = sorted((a, b))
    return _hkdf(shared, f"{VERSION}|share-key|{round_id}|{low}|{high}")


# --- masking --------------------------------------------------------------------------------


def pair_mask(seed: bytes, length: int, me: str, peer: str) -> np.ndarray:
    """+PRG for the peer ordered after me, −PRG for the one before (mod 2⁶⁴)."""
    mask = prg(seed, length)
    return mask if me < peer else (np.uint64(0) - mask)


def masked_input(
    values: np.ndarray,
    *,
    round_id: str,
    me: str,
    b: bytes,
    pair_seeds: Mapping[str, bytes],
) -> np.ndarray:
    """``values`` (already noisy, encoded) plus the self-mask and all pair masks."""
    length = len(values)
    total: np.ndarray = values.astype(np.uint64) + prg(self_seed(b, round_id, me), length)
    for peer, seed in pair_seeds.items():
        total = total + pair_mask(seed, length, me, peer)
    return total


def unmask(
    masked: Iterable[np.ndarray],
    length: int,
    *,
    round_id: str,
    self_seeds: Mapping[str, bytes],
    dropped_pairs: Iterable[tuple[str, str, bytes]],
) -> np.ndarray:
    """The sum of the submitted vectors with every mask removed.

    ``self_seeds`` maps each submitting node to its reconstructed ``b``; ``dropped_pairs`` lists
    (live node, dropped node, pair seed) for every pair with one end that shared but did not
    submit: the live node's vector still carries that pair's mask, which is removed here.
    """
    total = np.zeros(length, dtype=np.uint64)
    for vector in masked:
        if len(vector) != length:
            raise SecAggError("a masked vector has the wrong length")
        total = total + vector
    for node, b in self_seeds.items():
        total = total - prg(self_seed(b, round_id, node), length)
    for live, dropped, seed in dropped_pairs:
        total = total - pair_mask(seed, length, live, dropped)
    return total


# --- Shamir shares --------------------------------------------------------------------------


def split(secret: bytes, holders: int, threshold: int) -> list[tuple[int, int]]:
    """(x, y) shares of a 32-byte secret; any ``threshold`` of them reconstruct it."""
    if len(secret) != 32:
        raise SecAggError("a shared secret has 32 bytes")
    if not 1 < threshold <= holders:
        raise SecAggError("the threshold must be between 2 and the number of holders")
    value = int.from_bytes(secret, "big")
    return [
        (s.index, s.value)
        for s in shamirs.shares(value, holders, modulus=PRIME, threshold=threshold)
    ]


def lagrange_weights(xs: Sequence[int]) -> list[int]:
    """The weights λ_k with f(0) = Σ λ_k·f(x_k) mod p, for distinct nonzero x_k.

    Every secret of a round is reconstructed from shares held by the same nodes, so the weights
    are computed once per round and reused for every secret: Σ λ_k·y_k is then O(t) each.
    """
    if len(set(xs)) != len(xs) or any(not 0 < x < PRIME for x in xs):
        raise SecAggError("share positions must be distinct and nonzero")
    weights = []
    for k, xk in enumerate(xs):
        numerator, denominator = 1, 1
        for m, xm in enumerate(xs):
            if m != k:
                numerator = numerator * xm % PRIME
                denominator = denominator * (xm - xk) % PRIME
        weights.append(numerator * pow(denominator, -1, PRIME) % PRIME)
    return weights


def combine(values: Sequence[int], weights: Sequence[int]) -> bytes:
    """The secret from share values at the positions the weights were made for."""
    if len(values) != len(weights):
        raise SecAggError("one share per weight")
    secret = sum(v * w for v, w in zip(values, weights, strict=True)) % PRIME
    if secret >= 1 << 256:
        raise SecAggError("the shares do not reconstruct a 32-byte secret")
    return secret.to_bytes(32, "big")


# --- share transport ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SharePair:
    """What node ``sender`` gives node ``recipient``: its shares of ``s`` and of ``b``."""

    sender: str
    recipient: str
    x: int
    s_share: int
    b_share: int

    def to_bytes(self) -> bytes:
        if not 0 < self.x < 2**32:
            raise SecAggError("a share position must fit in 4 bytes")
        return (
            self.x.to_bytes(4, "big")
            + self.s_share.to_bytes(SHARE_BYTES, "big")
            + self.b_share.to_bytes(SHARE_BYTES, "big")
        )


def _aad(round_id: str, sender: str, recipient: str) -> bytes:
    return f"{VERSION}|shares|{round_id}|{sender}|{recipient}".encode()


def seal(pair: SharePair, key: bytes, round_id: str, nonce: bytes | None = None) -> str:
    """ChaCha20-Poly1305 of the share pair, bound to round, sender and recipient."""
    nonce = nonce if nonce is not None else os.urandom(12)
    sealed = ChaCha20Poly1305(key).encrypt(
        nonce, pair.to_bytes(), _aad(round_id, pair.sender, pair.recipient)
    )
    return base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")


def open_sealed(text: str, key: bytes, round_id: str, sender: str, recipient: str) -> SharePair:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        plain = ChaCha20Poly1305(key).decrypt(raw[:12], raw[12:], _aad(round_id, sender, recipient))
    except (ValueError, InvalidTag):
        raise SecAggError(f"the shares from {sender} do not decrypt") from None
    if len(plain) != 4 + 2 * SHARE_BYTES:
        raise SecAggError(f"the shares from {sender} have the wrong length")
    x = int.from_bytes(plain[:4], "big")
    s_share = int.from_bytes(plain[4 : 4 + SHARE_BYTES], "big")
    b_share = int.from_bytes(plain[4 + SHARE_BYTES :], "big")
    if not (s_share < PRIME and b_share < PRIME):
        raise SecAggError(f"the shares from {sender} are out of range")
    return SharePair(sender, recipient, x, s_share, b_share)


def default_threshold(nodes: int) -> int:
    """⌈2N/3⌉: tolerates N/3 dropouts, and an aggregator plus fewer than N/3 colluding nodes
    cannot collect both kinds of share for any live node (2t − k > N)."""
    return -(-2 * nodes // 3)


def minimum_threshold(nodes: int) -> int:
    """Below ⌊N/2⌋+1 an aggregator could ask disjoint halves for the two kinds of share."""
    return nodes // 2 + 1
