"""The published secure-aggregation test vectors (docs/reference/secure-aggregation-vectors.json).

Every value is computed with protocol/secagg.py from fixed inputs, so another implementation can
check its arithmetic against ours byte for byte. Three things are inputs here that are random in a
real round: the X25519 private keys and self-mask seeds (fixed bytes), the noise shares (OpenDP
draws them and cannot be seeded) and the Shamir polynomials (``shamirs.shares`` draws its
coefficients with ``secrets``, so the shares are evaluated here from fixed coefficients).

    python scripts/secagg_vectors.py --check   # exit 0 if the JSON is current, 1 if it differs
    python scripts/secagg_vectors.py --write   # regenerate it

tests/protocol/test_secagg_vectors.py recomputes every value of the JSON on its own.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from protocol import secagg

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "docs" / "reference" / "secure-aggregation-vectors.json"
DOCUMENTATION = "docs/reference/secure-aggregation-vectors.md"

ROUND_ID = "pd-vectors-round-0001"
NODES = ("1111111111111111", "2222222222222222", "3333333333333333")
LENGTH = 5
INPUTS = {
    NODES[0]: [5, -3, 0, 12, -7],
    NODES[1]: [-2, 8, 1, -4, 0],
    NODES[2]: [7, 0, -5, 2, 1],
}
NOISE = {
    NODES[0]: [1, -2, 0, 3, -1],
    NODES[1]: [0, 1, -1, -2, 2],
    NODES[2]: [-3, 0, 2, 1, 0],
}
DROPPED = NODES[2]  # the dropout case: node 3 shares, then never sends its masked vector
SEALED_FROM, SEALED_TO = NODES[0], NODES[1]
SEALED_NONCE = bytes.fromhex("000102030405060708090a0b")


def fixed_bytes(label: str, size: int = 32) -> bytes:
    """Arbitrary but reproducible bytes (nothing up the sleeve: SHA-512 of a label)."""
    return hashlib.sha512(f"publieksdata secagg test vector|{label}".encode()).digest()[:size]


def words(vector: np.ndarray) -> list[str]:
    """uint64 words as decimal strings (JSON numbers above 2⁵³ lose precision in many parsers)."""
    return [str(int(v)) for v in vector.tolist()]


def evaluate(coefficients: Sequence[int], x: int) -> int:
    """f(x) mod p for f(X) = Σ a_k·X^k (Horner, as ``shamirs.shares`` evaluates it)."""
    value = 0
    for coefficient in reversed(coefficients):
        value = (value * x + coefficient) % secagg.PRIME
    return value


def build() -> dict[str, Any]:
    threshold = secagg.default_threshold(len(NODES))
    positions = {key_id: index + 1 for index, key_id in enumerate(sorted(NODES))}
    c_keys = {n: secagg.private_from_bytes(fixed_bytes(f"{n}|c")) for n in NODES}
    s_keys = {n: secagg.private_from_bytes(fixed_bytes(f"{n}|s")) for n in NODES}
    b_seeds = {n: fixed_bytes(f"{n}|b") for n in NODES}
    c_public = {n: secagg.public_text(k) for n, k in c_keys.items()}
    s_public = {n: secagg.public_text(k) for n, k in s_keys.items()}

    pairs = []
    pair_seeds: dict[str, dict[str, bytes]] = {n: {} for n in NODES}
    share_keys: dict[tuple[str, str], bytes] = {}
    for low, high in itertools.combinations(sorted(NODES), 2):
        s_shared = secagg.agree(s_keys[low], s_public[high])
        c_shared = secagg.agree(c_keys[low], c_public[high])
        seed = secagg.pair_seed(s_shared, ROUND_ID, low, high)
        key = secagg.share_key(c_shared, ROUND_ID, low, high)
        pair_seeds[low][high] = pair_seeds[high][low] = seed
        share_keys[low, high] = share_keys[high, low] = key
        pairs.append(
            {
                "low": low,
                "high": high,
                "s_shared": s_shared.hex(),
                "pair_seed": seed.hex(),
                "pair_prg": words(secagg.prg(seed, LENGTH)),
                "c_shared": c_shared.hex(),
                "share_key": key.hex(),
            }
        )

    nodes = []
    masked: dict[str, np.ndarray] = {}
    for n in NODES:
        noisy = [x + e for x, e in zip(INPUTS[n], NOISE[n], strict=True)]
        seed = secagg.self_seed(b_seeds[n], ROUND_ID, n)
        masked[n] = secagg.masked_input(
            secagg.encode(noisy), round_id=ROUND_ID, me=n, b=b_seeds[n], pair_seeds=pair_seeds[n]
        )
        nodes.append(
            {
                "key_id": n,
                "position": positions[n],
                "c_private": secagg.private_bytes(c_keys[n]).hex(),
                "c_public": c_public[n],
                "s_private": secagg.private_bytes(s_keys[n]).hex(),
                "s_public": s_public[n],
                "b": b_seeds[n].hex(),
                "b_commitment": hashlib.sha256(b_seeds[n]).hexdigest(),
                "input": INPUTS[n],
                "noise": NOISE[n],
                "encoded": words(secagg.encode(noisy)),
                "self_seed": seed.hex(),
                "self_prg": words(secagg.prg(seed, LENGTH)),
                "masked": words(masked[n]),
                "masked_text": secagg.to_text(masked[n]),
            }
        )

    # Shamir: f(X) = secret + a_1·X + … + a_{t−1}·X^{t−1} over GF(2⁵²¹−1), shares at x = position.
    polynomials: dict[tuple[str, str], list[int]] = {}
    secrets = []
    for n in NODES:
        for kind, secret in (("s", secagg.private_bytes(s_keys[n])), ("b", b_seeds[n])):
            coefficients = [int.from_bytes(secret, "big")] + [
                int.from_bytes(fixed_bytes(f"{n}|shamir|{kind}|{k}", 64), "big") % secagg.PRIME
                for k in range(1, threshold)
            ]
            polynomials[n, kind] = coefficients
            secrets.append(
                {
                    "owner": n,
                    "kind": kind,
                    "secret": secret.hex(),
                    "coefficients": [str(a) for a in coefficients],
                    "shares": [
                        {"x": x, "y": str(evaluate(coefficients, x))}
                        for x in sorted(positions.values())
                    ],
                }
            )
    lagrange = [
        {"positions": list(xs), "weights": [str(w) for w in secagg.lagrange_weights(xs)]}
        for xs in itertools.combinations(sorted(positions.values()), threshold)
    ]

    def reconstruct(owner: str, kind: str, holders: Sequence[str]) -> bytes:
        xs = [positions[h] for h in holders][:threshold]
        ys = [evaluate(polynomials[owner, kind], x) for x in xs]
        return secagg.combine(ys, secagg.lagrange_weights(xs))

    def outcome(submitted: Sequence[str]) -> dict[str, Any]:
        dropped = sorted(set(NODES) - set(submitted))
        b_back = {n: reconstruct(n, "b", submitted) for n in submitted}
        s_back = {d: reconstruct(d, "s", submitted) for d in dropped}
        dropped_pairs = []
        for d in dropped:
            private = secagg.private_from_bytes(s_back[d])
            for live in submitted:
                seed = secagg.pair_seed(secagg.agree(private, s_public[live]), ROUND_ID, live, d)
                dropped_pairs.append((live, d, seed))
        vectors = [masked[n] for n in submitted]
        unmasked = secagg.unmask(
            vectors,
            LENGTH,
            round_id=ROUND_ID,
            self_seeds=b_back,
            dropped_pairs=dropped_pairs,
        )
        return {
            "submitted": list(submitted),
            "dropped": dropped,
            "reveal_positions": [positions[n] for n in submitted][:threshold],
            "reconstructed_b": {n: b.hex() for n, b in b_back.items()},
            "reconstructed_s_private": {d: s.hex() for d, s in s_back.items()},
            "dropped_pairs": [
                {"live": live, "dropped": d, "pair_seed": seed.hex()}
                for live, d, seed in dropped_pairs
            ],
            "masked_sum": words(sum(vectors, np.zeros(LENGTH, dtype=np.uint64))),
            "unmasked": secagg.decode(unmasked),
            "expected": [sum(INPUTS[n][k] + NOISE[n][k] for n in submitted) for k in range(LENGTH)],
        }

    pair_of_shares = secagg.SharePair(
        sender=SEALED_FROM,
        recipient=SEALED_TO,
        x=positions[SEALED_TO],
        s_share=evaluate(polynomials[SEALED_FROM, "s"], positions[SEALED_TO]),
        b_share=evaluate(polynomials[SEALED_FROM, "b"], positions[SEALED_TO]),
    )
    sealed = {
        "sender": SEALED_FROM,
        "recipient": SEALED_TO,
        "x": pair_of_shares.x,
        "s_share": str(pair_of_shares.s_share),
        "b_share": str(pair_of_shares.b_share),
        "plaintext": pair_of_shares.to_bytes().hex(),
        "share_key": share_keys[SEALED_FROM, SEALED_TO].hex(),
        "aad": f"{secagg.VERSION}|shares|{ROUND_ID}|{SEALED_FROM}|{SEALED_TO}",
        "nonce": SEALED_NONCE.hex(),
        "sealed": secagg.seal(
            pair_of_shares, share_keys[SEALED_FROM, SEALED_TO], ROUND_ID, nonce=SEALED_NONCE
        ),
    }

    return {
        "title": "publieksdata secure-aggregation test vectors",
        "documentation": DOCUMENTATION,
        "generator": "scripts/secagg_vectors.py",
        "version": secagg.VERSION,
        "round_id": ROUND_ID,
        "length": LENGTH,
        "threshold": threshold,
        "prime": str(secagg.PRIME),
        "nodes": nodes,
        "pairs": pairs,
        "all_submit": outcome(sorted(NODES)),
        "dropout": outcome(sorted(set(NODES) - {DROPPED})),
        "shamir": {"secrets": secrets, "lagrange": lagrange},
        "sealed": sealed,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true", help="exit 1 if the JSON is stale")
    action.add_argument("--write", action="store_true", help="regenerate the JSON")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        VECTORS.write_text(text, encoding="utf-8")
        print(f"wrote {VECTORS.relative_to(ROOT)}")
        return 0
    current = VECTORS.read_text(encoding="utf-8") if VECTORS.exists() else ""
    if current != text:
        print(
            f"{VECTORS.relative_to(ROOT)} differs from what protocol/secagg.py computes; "
            "run python scripts/secagg_vectors.py --write and review the diff",
            file=sys.stderr,
        )
        return 1
    print(f"{VECTORS.relative_to(ROOT)} is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
