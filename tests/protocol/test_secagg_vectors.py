"""The published test vectors (docs/reference/secure-aggregation-vectors.json) hold.

Every value of the JSON is recomputed here from its inputs with protocol/secagg.py, and the parts a
second implementation has to get right (HKDF info strings, the ChaCha20 stream, the mask formula,
Shamir evaluation, the sealed bytes) are recomputed a second time from the documentation alone:
RFC 5869 with ``hmac``, RFC 8439's block function in plain Python, integers mod 2⁶⁴.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shamirs
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from protocol import secagg
from tests.test_docs import test_links_resolve as check_links

ROOT = Path(__file__).resolve().parent.parent.parent
VECTORS = ROOT / "docs" / "reference" / "secure-aggregation-vectors.json"
DOC = ROOT / "docs" / "reference" / "secure-aggregation-vectors.md"
GENERATOR = ROOT / "scripts" / "secagg_vectors.py"
MOD = 1 << 64

V: dict[str, Any] = json.loads(VECTORS.read_text("utf-8"))
ROUND = V["round_id"]
LENGTH = V["length"]
NODES = {node["key_id"]: node for node in V["nodes"]}
PAIRS = {(pair["low"], pair["high"]): pair for pair in V["pairs"]}


def ints(words: list[str]) -> list[int]:
    return [int(w) for w in words]


def pair_of(a: str, b: str) -> Any:
    low, high = sorted((a, b))
    return PAIRS[low, high]


# --- independent oracles: only the standards and the documentation ---------------------------


def hkdf_sha256(secret: bytes, info: str) -> bytes:
    """RFC 5869 with an absent salt (HashLen zero bytes) and L = 32 (one block)."""
    prk = hmac.new(b"\x00" * 32, secret, hashlib.sha256).digest()
    return hmac.new(prk, info.encode("utf-8") + b"\x01", hashlib.sha256).digest()


def chacha20_words(key: bytes, count: int) -> list[int]:
    """RFC 8439 ChaCha20 key stream (counter 0, all-zero 96-bit nonce) as little-endian uint64."""

    def rotl(v: int, c: int) -> int:
        return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))

    def quarter(s: list[int], a: int, b: int, c: int, d: int) -> None:
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = rotl(s[b] ^ s[c], 7)

    stream = b""
    counter = 0
    while len(stream) < 8 * count:
        state = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
        state += [*struct.unpack("<8I", key), counter, 0, 0, 0]
        working = list(state)
        for _ in range(10):
            quarter(working, 0, 4, 8, 12)
            quarter(working, 1, 5, 9, 13)
            quarter(working, 2, 6, 10, 14)
            quarter(working, 3, 7, 11, 15)
            quarter(working, 0, 5, 10, 15)
            quarter(working, 1, 6, 11, 12)
            quarter(working, 2, 7, 8, 13)
            quarter(working, 3, 4, 9, 14)
        stream += struct.pack(
            "<16I", *((w + s) & 0xFFFFFFFF for w, s in zip(working, state, strict=True))
        )
        counter += 1
    return list(struct.unpack(f"<{count}Q", stream[: 8 * count]))


def test_the_oracles_know_the_standards() -> None:
    # RFC 8439 A.1 test vector 1 (all-zero key, nonce and counter) and RFC 5869 test case 3.
    zero_block = bytes.fromhex(
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
        "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
    )
    assert chacha20_words(b"\x00" * 32, 8) == list(struct.unpack("<8Q", zero_block))
    okm = hkdf_sha256(b"\x0b" * 22, "")
    assert okm.hex() == "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"


# --- the nodes --------------------------------------------------------------------------------


def test_the_vectors_describe_this_protocol_version() -> None:
    assert V["version"] == secagg.VERSION
    assert int(V["prime"]) == secagg.PRIME == 2**521 - 1
    assert V["threshold"] == secagg.default_threshold(len(NODES))
    assert [n["position"] for n in V["nodes"]] == [
        sorted(NODES).index(n["key_id"]) + 1 for n in V["nodes"]
    ]
    assert all(re.fullmatch(r"[0-9a-f]{16}", key_id) for key_id in NODES)


@pytest.mark.parametrize("key_id", sorted(NODES))
def test_keys_and_self_mask(key_id: str) -> None:
    node = NODES[key_id]
    for kind in ("c", "s"):
        private = secagg.private_from_bytes(bytes.fromhex(node[f"{kind}_private"]))
        assert secagg.private_bytes(private).hex() == node[f"{kind}_private"]
        assert secagg.public_text(private) == node[f"{kind}_public"]
    b = bytes.fromhex(node["b"])
    assert hashlib.sha256(b).hexdigest() == node["b_commitment"]
    seed = secagg.self_seed(b, ROUND, key_id)
    assert seed.hex() == node["self_seed"]
    assert seed == hkdf_sha256(b, f"publieksdata-secagg-v1|self-mask|{ROUND}|{key_id}")
    assert secagg.prg(seed, LENGTH).tolist() == ints(node["self_prg"])
    assert chacha20_words(seed, LENGTH) == ints(node["self_prg"])
    noisy = [x + e for x, e in zip(node["input"], node["noise"], strict=True)]
    assert secagg.encode(noisy).tolist() == ints(node["encoded"])
    assert ints(node["encoded"]) == [v % MOD for v in noisy]


@pytest.mark.parametrize("pair", sorted(PAIRS), ids="-".join)
def test_pair_seeds_and_share_keys(pair: tuple[str, str]) -> None:
    low, high = pair
    vector = PAIRS[pair]
    for me, peer in ((low, high), (high, low)):  # the same from both ends
        s_me = secagg.private_from_bytes(bytes.fromhex(NODES[me]["s_private"]))
        c_me = secagg.private_from_bytes(bytes.fromhex(NODES[me]["c_private"]))
        s_shared = secagg.agree(s_me, NODES[peer]["s_public"])
        c_shared = secagg.agree(c_me, NODES[peer]["c_public"])
        assert s_shared.hex() == vector["s_shared"]
        assert c_shared.hex() == vector["c_shared"]
        assert secagg.pair_seed(s_shared, ROUND, me, peer).hex() == vector["pair_seed"]
        assert secagg.share_key(c_shared, ROUND, me, peer).hex() == vector["share_key"]
    seed = bytes.fromhex(vector["pair_seed"])
    assert seed == hkdf_sha256(
        bytes.fromhex(vector["s_shared"]), f"publieksdata-secagg-v1|pair-mask|{ROUND}|{low}|{high}"
    )
    assert bytes.fromhex(vector["share_key"]) == hkdf_sha256(
        bytes.fromhex(vector["c_shared"]), f"publieksdata-secagg-v1|share-key|{ROUND}|{low}|{high}"
    )
    assert secagg.prg(seed, LENGTH).tolist() == ints(vector["pair_prg"])
    assert chacha20_words(seed, LENGTH) == ints(vector["pair_prg"])


@pytest.mark.parametrize("key_id", sorted(NODES))
def test_masked_vector(key_id: str) -> None:
    node = NODES[key_id]
    seeds = {
        peer: bytes.fromhex(pair_of(key_id, peer)["pair_seed"]) for peer in NODES if peer != key_id
    }
    masked = secagg.masked_input(
        secagg.encode([x + e for x, e in zip(node["input"], node["noise"], strict=True)]),
        round_id=ROUND,
        me=key_id,
        b=bytes.fromhex(node["b"]),
        pair_seeds=seeds,
    )
    assert masked.tolist() == ints(node["masked"])
    assert secagg.to_text(masked) == node["masked_text"]
    assert secagg.from_text(node["masked_text"], LENGTH).tolist() == ints(node["masked"])
    # The documented formula, in integers: + for a peer with a larger key id, − for a smaller.
    expected = ints(node["encoded"])
    expected = [(y + m) % MOD for y, m in zip(expected, ints(node["self_prg"]), strict=True)]
    for peer in seeds:
        sign = 1 if key_id < peer else -1
        words = ints(pair_of(key_id, peer)["pair_prg"])
        expected = [(y + sign * m) % MOD for y, m in zip(expected, words, strict=True)]
    assert expected == ints(node["masked"])


# --- the aggregator ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["all_submit", "dropout"])
def test_unmasking(case: str) -> None:
    outcome = V[case]
    submitted, dropped = outcome["submitted"], outcome["dropped"]
    assert sorted(submitted + dropped) == sorted(NODES)
    xs = outcome["reveal_positions"]
    assert xs == [NODES[n]["position"] for n in submitted][: V["threshold"]]
    weights = secagg.lagrange_weights(xs)

    def recover(owner: str, kind: str) -> bytes:
        shares = dict(
            (share["x"], int(share["y"]))
            for entry in V["shamir"]["secrets"]
            if entry["owner"] == owner and entry["kind"] == kind
            for share in entry["shares"]
        )
        return secagg.combine([shares[x] for x in xs], weights)

    self_seeds = {n: recover(n, "b") for n in submitted}
    assert {n: b.hex() for n, b in self_seeds.items()} == outcome["reconstructed_b"]
    assert all(b.hex() == NODES[n]["b"] for n, b in self_seeds.items())
    dropped_pairs = []
    for d in dropped:
        raw = recover(d, "s")
        assert raw.hex() == outcome["reconstructed_s_private"][d] == NODES[d]["s_private"]
        private = secagg.private_from_bytes(raw)
        assert secagg.public_text(private) == NODES[d]["s_public"]
        for live in submitted:
            shared = secagg.agree(private, NODES[live]["s_public"])
            dropped_pairs.append((live, d, secagg.pair_seed(shared, ROUND, live, d)))
    assert [
        {"live": live, "dropped": d, "pair_seed": seed.hex()} for live, d, seed in dropped_pairs
    ] == outcome["dropped_pairs"]
    assert all(
        entry["pair_seed"] == pair_of(entry["live"], entry["dropped"])["pair_seed"]
        for entry in outcome["dropped_pairs"]
    )
    vectors = [np.array(ints(NODES[n]["masked"]), dtype=np.uint64) for n in submitted]
    masked_sum = [
        sum(column) % MOD
        for column in zip(*(ints(NODES[n]["masked"]) for n in submitted), strict=True)
    ]
    assert masked_sum == ints(outcome["masked_sum"])
    total = secagg.unmask(
        vectors, LENGTH, round_id=ROUND, self_seeds=self_seeds, dropped_pairs=dropped_pairs
    )
    assert secagg.decode(total) == outcome["unmasked"] == outcome["expected"]
    assert outcome["expected"] == [
        sum(NODES[n]["input"][k] + NODES[n]["noise"][k] for n in submitted) for k in range(LENGTH)
    ]


def test_the_dropout_case_drops_a_node_after_sharing() -> None:
    assert V["dropout"]["dropped"] and not V["all_submit"]["dropped"]
    assert V["dropout"]["dropped_pairs"]


# --- Shamir -----------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(2 * len(NODES)))
def test_shamir_shares(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = V["shamir"]["secrets"][index]
    coefficients = ints(entry["coefficients"])
    assert len(coefficients) == V["threshold"]
    secret = bytes.fromhex(entry["secret"])
    node = NODES[entry["owner"]]
    assert entry["secret"] == (node["s_private"] if entry["kind"] == "s" else node["b"])
    assert coefficients[0] == int.from_bytes(secret, "big")  # f(0) is the secret, big-endian
    assert all(0 <= a < secagg.PRIME for a in coefficients)
    shares = [(share["x"], int(share["y"])) for share in entry["shares"]]
    assert [x for x, _ in shares] == list(range(1, len(NODES) + 1))
    for x, y in shares:
        assert y == sum(a * x**k for k, a in enumerate(coefficients)) % secagg.PRIME

    # secagg.split gives exactly these shares when shamirs draws these coefficients.
    class FixedCoefficients:
        def __init__(self) -> None:
            self.rest = iter(coefficients[1:])

        def randbelow(self, bound: int) -> int:
            assert bound == secagg.PRIME
            return next(self.rest)

    monkeypatch.setattr(sys.modules["shamirs.shamirs"], "secrets", FixedCoefficients())
    assert secagg.split(secret, len(NODES), V["threshold"]) == shares
    monkeypatch.undo()

    for lagrange in V["shamir"]["lagrange"]:
        xs = lagrange["positions"]
        weights = secagg.lagrange_weights(xs)
        assert [str(w) for w in weights] == lagrange["weights"]
        ys = [dict(shares)[x] for x in xs]
        assert secagg.combine(ys, weights) == secret
        oracle = shamirs.interpolate(
            [shamirs.share(x, y, secagg.PRIME) for x, y in zip(xs, ys, strict=True)]
        )
        assert oracle == coefficients[0]


def test_every_threshold_subset_has_weights() -> None:
    positions = sorted(n["position"] for n in V["nodes"])
    subsets = [lagrange["positions"] for lagrange in V["shamir"]["lagrange"]]
    assert len(subsets) == 3 and all(len(xs) == V["threshold"] for xs in subsets)
    assert all(set(xs) <= set(positions) for xs in subsets)
    assert V["shamir"]["lagrange"][0] == {
        "positions": [1, 2],
        "weights": ["2", str(secagg.PRIME - 1)],  # 2·f(1) − f(2) = f(0) for a line
    }


# --- share transport --------------------------------------------------------------------------


def test_sealed_share_pair() -> None:
    sealed = V["sealed"]
    sender, recipient = sealed["sender"], sealed["recipient"]
    pair = secagg.SharePair(
        sender, recipient, sealed["x"], int(sealed["s_share"]), int(sealed["b_share"])
    )
    assert sealed["x"] == NODES[recipient]["position"]
    entries = {
        (e["owner"], e["kind"]): dict(e["shares"][sealed["x"] - 1]) for e in V["shamir"]["secrets"]
    }
    assert entries[sender, "s"] == {"x": sealed["x"], "y": sealed["s_share"]}
    assert entries[sender, "b"] == {"x": sealed["x"], "y": sealed["b_share"]}
    plaintext = bytes.fromhex(sealed["plaintext"])
    assert pair.to_bytes() == plaintext
    assert plaintext == (
        sealed["x"].to_bytes(4, "big")
        + int(sealed["s_share"]).to_bytes(66, "big")
        + int(sealed["b_share"]).to_bytes(66, "big")
    )
    assert sealed["share_key"] == pair_of(sender, recipient)["share_key"]
    key = bytes.fromhex(sealed["share_key"])
    nonce = bytes.fromhex(sealed["nonce"])
    assert sealed["aad"] == f"publieksdata-secagg-v1|shares|{ROUND}|{sender}|{recipient}"
    assert secagg.seal(pair, key, ROUND, nonce=nonce) == sealed["sealed"]
    assert secagg.open_sealed(sealed["sealed"], key, ROUND, sender, recipient) == pair
    raw = base64.urlsafe_b64decode(sealed["sealed"] + "=" * (-len(sealed["sealed"]) % 4))
    assert raw[:12] == nonce
    assert ChaCha20Poly1305(key).decrypt(nonce, raw[12:], sealed["aad"].encode()) == plaintext


# --- the documentation and the generator ------------------------------------------------------


def test_the_document_explains_the_vectors() -> None:
    text = DOC.read_text("utf-8")
    assert "secure-aggregation-vectors.json" in text
    assert V["documentation"] == str(DOC.relative_to(ROOT))
    for info in (
        "publieksdata-secagg-v1|pair-mask|{round_id}|{low}|{high}",
        "publieksdata-secagg-v1|self-mask|{round_id}|{key_id}",
        "publieksdata-secagg-v1|share-key|{round_id}|{low}|{high}",
        "publieksdata-secagg-v1|shares|{round_id}|{sender}|{recipient}",
    ):
        assert info in text, info
    for field in re.findall(r'"(\w+)":', VECTORS.read_text("utf-8")):
        if not re.fullmatch(r"[0-9a-f]{16}", field):
            assert f"`{field}`" in text, f"the document does not explain {field!r}"


def test_the_values_shown_in_the_document_are_in_the_vectors() -> None:
    text = DOC.read_text("utf-8")
    published = VECTORS.read_text("utf-8")
    shown = re.findall(r"`([0-9a-f]{24,}|[A-Za-z0-9_-]{43,}|-?[0-9]{6,})`", text)
    assert len(shown) >= 5
    missing = [value for value in shown if value not in published]
    assert not missing, f"the document shows values the vectors do not have: {missing}"


def test_the_document_links_resolve() -> None:
    check_links(DOC)


def test_the_generator_agrees_with_the_published_file() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
