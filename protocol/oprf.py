"""The OPRF of RFC 9497 (mode OPRF, suite ristretto255-SHA512) with its key split t-of-n.

The group arithmetic is libsodium's (through ``rbcl``, which bundles it); this module only
implements the protocol steps of RFC 9497 on top of it: hash-to-group with expand_message_xmd
(RFC 9380, SHA-512), blind, evaluate, finalize, and DeriveKeyPair for the test vectors. It writes
no curve arithmetic: scalars are reduced and multiplied by libsodium, points only ever pass
through libsodium's functions.

The threshold part is plain Shamir secret sharing of the key over the ristretto255 scalar field
(integers modulo the group order ``L``): key holder ``i`` holds ``k_i = f(i)`` for a random
polynomial ``f`` of degree ``t - 1`` with ``f(0) = k``. Each holder evaluates the same blinded
element ``B`` with its share, ``Z_i = k_i·B``; any ``t`` of them combine as
``Z = sum(lambda_i·Z_i) = k·B`` with the Lagrange coefficients at zero ("in the exponent"). The
client folds its unblinding ``1/r`` into those coefficients, so that combining and unblinding
cost ``t`` scalar multiplications together. The proof that this equals the unsplit key's output
is in docs/explanation/sector-pseudonym.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import rbcl

SUITE = b"ristretto255-SHA512"
MODE_OPRF = 0
CONTEXT = b"OPRFV1-" + bytes([MODE_OPRF]) + b"-" + SUITE
HASH_TO_GROUP_DST = b"HashToGroup-" + CONTEXT
DERIVE_KEY_PAIR_DST = b"DeriveKeyPair" + CONTEXT
# The order of the ristretto255 group (RFC 9496 section 4.1).
L = 2**252 + 27742317777372353535851937790883648493
ELEMENT_BYTES = 32
SCALAR_BYTES = 32
OUTPUT_BYTES = 64
MAX_INPUT_BYTES = 2**16 - 1
IDENTITY = bytes(ELEMENT_BYTES)  # the identity's (only) canonical encoding, RFC 9496


class OprfError(ValueError):
    """An input the protocol cannot process: a bad element, a bad share set, too long an input."""


# -- encoding ------------------------------------------------------------------------------------


def _i2osp(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")


def scalar_to_bytes(value: int) -> bytes:
    """A scalar as 32 little-endian bytes (RFC 9496), reduced modulo L."""
    return (value % L).to_bytes(SCALAR_BYTES, "little")


def scalar_from_bytes(data: bytes) -> int:
    """A canonical 32-byte scalar; anything not below L is refused."""
    if len(data) != SCALAR_BYTES:
        raise OprfError("a scalar is 32 bytes")
    value = int.from_bytes(data, "little")
    if not 0 < value < L:
        raise OprfError("the scalar is zero or not reduced")
    return value


def random_scalar() -> int:
    """A uniformly random nonzero scalar, from libsodium."""
    return int.from_bytes(rbcl.crypto_core_ristretto255_scalar_random(), "little")


def check_element(data: bytes) -> bytes:
    """A valid, non-identity ristretto255 encoding, or :class:`OprfError`."""
    if (
        len(data) != ELEMENT_BYTES
        or data == IDENTITY
        or not rbcl.crypto_core_ristretto255_is_valid_point(data)
    ):
        raise OprfError("not a valid ristretto255 element")
    return data


# -- RFC 9380 / RFC 9497 building blocks ---------------------------------------------------------


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """expand_message_xmd of RFC 9380 section 5.3.1 with SHA-512."""
    b_in_bytes, s_in_bytes = 64, 128
    ell = -(-length // b_in_bytes)
    if ell > 255 or length > 65535 or len(dst) > 255:
        raise OprfError("expand_message_xmd: the requested length or the DST is too long")
    dst_prime = dst + _i2osp(len(dst), 1)
    msg_prime = bytes(s_in_bytes) + msg + _i2osp(length, 2) + b"\x00" + dst_prime
    b0 = hashlib.sha512(msg_prime).digest()
    b_i = hashlib.sha512(b0 + b"\x01" + dst_prime).digest()
    out = [b_i]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b0, b_i, strict=True))
        b_i = hashlib.sha512(mixed + _i2osp(i, 1) + dst_prime).digest()
        out.append(b_i)
    return b"".join(out)[:length]


def hash_to_group(data: bytes) -> bytes:
    """HashToGroup of RFC 9497 for ristretto255: 64 uniform bytes, then libsodium's map."""
    uniform = expand_message_xmd(data, HASH_TO_GROUP_DST, 64)
    return bytes(rbcl.crypto_core_ristretto255_from_hash(uniform))


def derive_key(seed: bytes, info: bytes) -> int:
    """DeriveKeyPair of RFC 9497 section 3.2.1 (the secret scalar only)."""
    derive_input = seed + _i2osp(len(info), 2) + info
    for counter in range(256):
        uniform = expand_message_xmd(derive_input + _i2osp(counter, 1), DERIVE_KEY_PAIR_DST, 64)
        key = int.from_bytes(rbcl.crypto_core_ristretto255_scalar_reduce(uniform), "little")
        if key:
            return key
    raise OprfError("DeriveKeyPair found no key")  # pragma: no cover - probability 2^-2000


def _mul(scalar: int, element: bytes) -> bytes:
    try:
        return bytes(rbcl.crypto_scalarmult_ristretto255(scalar_to_bytes(scalar), element))
    except RuntimeError:  # libsodium refuses a zero scalar or an identity result
        raise OprfError("the scalar multiplication has no valid result") from None


def blind(data: bytes, blind_scalar: int | None = None) -> tuple[int, bytes]:
    """Blind of RFC 9497: (the blind r, the blinded element r·H(input))."""
    if len(data) > MAX_INPUT_BYTES:
        raise OprfError("the OPRF input is longer than 65535 bytes")
    r = blind_scalar if blind_scalar is not None else random_scalar()
    point = hash_to_group(data)
    # from_hash never yields the identity for a uniform input except with probability 2^-252;
    # RFC 9497 says to refuse it, and libsodium's multiplication would raise on it anyway.
    check_element(point)
    return r, _mul(r, point)


def evaluate(key: int, blinded: bytes) -> bytes:
    """BlindEvaluate of RFC 9497 (also a key holder's step, with its share as ``key``)."""
    return _mul(key, check_element(blinded))


def finalize_element(data: bytes, unblinded: bytes) -> bytes:
    """The hash of Finalize in RFC 9497 section 3.3.1, given the unblinded element N."""
    return hashlib.sha512(
        _i2osp(len(data), 2) + data + _i2osp(len(unblinded), 2) + unblinded + b"Finalize"
    ).digest()


def finalize(data: bytes, blind_scalar: int, evaluated: bytes) -> bytes:
    """Finalize of RFC 9497: unblind with 1/r, then hash."""
    unblinded = _mul(pow(blind_scalar, -1, L), check_element(evaluated))
    return finalize_element(data, unblinded)


def direct(key: int, data: bytes) -> bytes:
    """The OPRF output computed with the whole key (ceremony checks and tests; no node has k)."""
    return finalize_element(data, _mul(key, check_element(hash_to_group(data))))


# -- threshold -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Share:
    """Key holder ``index``'s share ``value = f(index)`` of a key split ``threshold``-of-n."""

    index: int
    value: int
    threshold: int


def split(key: int, threshold: int, holders: int) -> list[Share]:
    """Shamir shares of ``key`` for holders 1..n, any ``threshold`` of which recover it."""
    if not 1 <= threshold <= holders <= 255:
        raise OprfError("need 1 <= threshold <= holders <= 255")
    if not 0 < key < L:
        raise OprfError("the key must be a nonzero scalar")
    coefficients = [key] + [random_scalar() for _ in range(threshold - 1)]
    shares = []
    for x in range(1, holders + 1):
        value = 0
        for c in reversed(coefficients):
            value = (value * x + c) % L
        if value == 0:  # probability n/L; a zero share cannot multiply in libsodium
            return split(key, threshold, holders)
        shares.append(Share(x, value, threshold))
    return shares


def lagrange_at_zero(indices: Sequence[int]) -> list[int]:
    """The Lagrange coefficients at x = 0 for the holders ``indices`` (distinct, 1..255)."""
    if len(set(indices)) != len(indices) or not all(0 < i < 256 for i in indices):
        raise OprfError("the holder indices must be distinct numbers from 1 to 255")
    coefficients = []
    for i in indices:
        num, den = 1, 1
        for j in indices:
            if j != i:
                num = num * j % L
                den = den * (j - i) % L
        coefficients.append(num * pow(den, -1, L) % L)
    return coefficients


def interpolate(elements: Sequence[tuple[int, bytes]], factor: int = 1) -> bytes:
    """sum((factor·lambda_i)·E_i) over holders' elements ``(index, E_i)``: with E_i = k_i·P
    this is (factor·k)·P, for any point P (Lagrange interpolation at zero, in the exponent)."""
    if not elements:
        raise OprfError("nothing to interpolate")
    lambdas = lagrange_at_zero([i for i, _ in elements])
    total: bytes | None = None
    for lam, (_, element) in zip(lambdas, elements, strict=True):
        term = _mul(lam * factor % L, check_element(element))
        total = term if total is None else bytes(rbcl.crypto_core_ristretto255_add(total, term))
    assert total is not None
    return total


def combine_and_finalize(
    data: bytes, blind_scalar: int, evaluations: Sequence[tuple[int, bytes]], threshold: int
) -> bytes:
    """The OPRF output from ``threshold`` holders' evaluations ``(index, k_i·B)`` of the same
    blinded element B = r·H(data): N = sum((lambda_i / r)·Z_i) = k·H(data), then Finalize."""
    if len(evaluations) != threshold:
        raise OprfError(f"need exactly {threshold} evaluations, got {len(evaluations)}")
    return finalize_element(data, interpolate(evaluations, pow(blind_scalar, -1, L)))


def multiply(scalar: int, element: bytes) -> bytes:
    """scalar·E for a valid element E (for the node's spot checks against public shares)."""
    return _mul(scalar, check_element(element))


def public_element(scalar: int) -> bytes:
    """scalar·G: the public key of a key, or a holder's public share (for the ceremony record)."""
    return bytes(rbcl.crypto_scalarmult_ristretto255_base(scalar_to_bytes(scalar)))


def new_key() -> int:
    """A fresh OPRF key (the ceremony's; it is split at once and never stored whole)."""
    return random_scalar()
