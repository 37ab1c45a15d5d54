"""The pseudo-random generator of the reach round: ChaCha20 keystreams and HKDF subkeys.

Only primitives from ``cryptography``: a 32-byte key expands to a ChaCha20 keystream (zero nonce;
every key here is used for one stream only, being fresh or derived for one purpose and round),
and HKDF-SHA256 derives purpose-bound keys from a secret the two helpers share.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol.reach.errors import ReachInputError

SEED_BYTES = 32
VERSION = b"publieksdata-reach-v1"
_NONCE = b"\x00" * 16


def fresh_seed() -> bytes:
    """A new uniformly random 32-byte seed (the operating system's CSPRNG)."""
    return secrets.token_bytes(SEED_BYTES)


def check_seed(seed: bytes) -> None:
    if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
        raise ReachInputError(f"a seed is exactly {SEED_BYTES} bytes")


def expand(seed: bytes, shape: tuple[int, ...], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """A uniform array of ``shape`` and unsigned ``dtype``: the ChaCha20 keystream of ``seed``."""
    check_seed(seed)
    size = math.prod(shape) * dtype.itemsize
    encryptor = Cipher(algorithms.ChaCha20(seed, _NONCE), mode=None).encryptor()
    stream = encryptor.update(bytes(size))
    return np.frombuffer(stream, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)


def derive(secret: bytes, purpose: bytes, round_id: bytes) -> bytes:
    """A 32-byte key for one ``purpose`` in one round, from the helpers' shared ``secret``."""
    check_seed(secret)
    if not round_id:
        raise ReachInputError("a round id must not be empty")
    info = VERSION + b"|" + purpose + b"|" + round_id
    return HKDF(hashes.SHA256(), SEED_BYTES, salt=None, info=info).derive(secret)


def uniform_nonzero(seed: bytes, shape: tuple[int, ...], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """Uniform non-zero elements of the unsigned ``dtype``: the keystream, with each zero redrawn
    from a further keystream (rejection sampling, so exactly uniform on the non-zero values)."""
    out = expand(seed, shape, dtype)
    round_no = 0
    while True:
        zeros = np.flatnonzero(out == 0)
        if zeros.size == 0:
            return out
        round_no += 1
        key = derive(seed, b"redraw", round_no.to_bytes(4, "big"))
        out.reshape(-1)[zeros] = expand(key, (zeros.size,), dtype)
