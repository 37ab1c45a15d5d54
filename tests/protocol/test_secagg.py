"""Secure-aggregation primitives: encodings, seeds, masks, Shamir, sealing, and whole rounds.

The rounds are played in-process by plain functions (seven nodes, threshold five) so that every
path of design §9 is exercised against protocol/secagg.py alone: everybody submits, nodes drop
out after sharing (their pair masks are removed with their reconstructed ``s`` keys), and nodes
drop out before sharing (they never enter the roster). All keys and seeds of the statistical
tests come from fixed bytes, so those tests are deterministic and never flake.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
from dataclasses import dataclass

import numpy as np
import pytest
import shamirs
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from protocol import secagg
from protocol.secagg import SecAggError

ROUND = "round-secagg-unit-test"
HALF = 1 << 63


def fixed(label: str) -> bytes:
    return hashlib.sha256(f"test_secagg|{label}".encode()).digest()


def fixed_key(label: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(fixed(label))


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


# --- vectors mod 2⁶⁴ ------------------------------------------------------------------------


def test_encode_decode_round_trip_with_the_edges() -> None:
    values = [0, 1, -1, 42, -42, HALF - 1, -HALF, -HALF + 1, 2**40, -(2**40)]
    encoded = secagg.encode(values)
    assert encoded.dtype == np.uint64
    assert encoded.tolist()[:3] == [0, 1, 2**64 - 1]
    assert encoded.tolist()[5:7] == [HALF - 1, HALF]
    assert secagg.decode(encoded) == values
    assert secagg.decode(secagg.encode([])) == []


@pytest.mark.parametrize("value", [HALF, -HALF - 1, 2**64, -(2**64), 10**30])
def test_encode_refuses_what_does_not_fit(value: int) -> None:
    with pytest.raises(SecAggError):
        secagg.encode([0, value])


@given(st.lists(st.integers(min_value=-HALF, max_value=HALF - 1), max_size=40))
@settings(max_examples=100, deadline=None)
def test_encode_decode_and_text_round_trip(values: list[int]) -> None:
    encoded = secagg.encode(values)
    assert secagg.decode(encoded) == values
    text = secagg.to_text(encoded)
    assert "=" not in text
    assert secagg.decode(secagg.from_text(text, len(values))) == values


def test_text_is_base64url_of_little_endian_words() -> None:
    vector = secagg.encode([1, -1, 256])
    raw = (1).to_bytes(8, "little") + b"\xff" * 8 + (256).to_bytes(8, "little")
    assert secagg.to_text(vector) == b64(raw)
    back = secagg.from_text(secagg.to_text(vector), 3)
    assert back.dtype == np.uint64 and back.tolist() == vector.tolist()
    back += np.uint64(1)  # a vector read off the wire is an ordinary, writable array


@pytest.mark.parametrize("length", [0, 2, 4, 100])
def test_from_text_refuses_the_wrong_length(length: int) -> None:
    text = secagg.to_text(secagg.encode([1, 2, 3]))
    with pytest.raises(SecAggError):
        secagg.from_text(text, length)


def test_from_text_refuses_a_partial_word() -> None:
    with pytest.raises(SecAggError):
        secagg.from_text(b64(b"\x00" * 12), 1)


# --- the PRG ----------------------------------------------------------------------------------


def test_prg_is_deterministic_and_has_the_length_asked() -> None:
    seed = fixed("prg")
    stream = secagg.prg(seed, 100)
    assert stream.dtype == np.uint64 and len(stream) == 100
    assert np.array_equal(stream, secagg.prg(seed, 100))
    assert np.array_equal(secagg.prg(seed, 17), stream[:17])  # a prefix, across block edges
    assert len(secagg.prg(seed, 0)) == 0
    assert len(set(stream.tolist())) == 100


def test_prg_is_chacha20_of_rfc_8439() -> None:
    # RFC 8439 A.1, test vector 1: all-zero key, nonce and counter.
    block = bytes.fromhex(
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
        "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
    )
    assert secagg.prg(b"\x00" * 32, 8).astype("<u8").tobytes() == block


def test_different_seeds_give_different_streams() -> None:
    streams = [secagg.prg(fixed(f"seed-{k}"), 8).tolist() for k in range(20)]
    assert len({tuple(s) for s in streams}) == 20
    one, other = secagg.prg(fixed("a"), 64), secagg.prg(fixed("b"), 64)
    assert not np.any(one == other)


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_prg_refuses_a_seed_of_the_wrong_size(size: int) -> None:
    with pytest.raises(SecAggError):
        secagg.prg(b"\x01" * size, 4)


# --- keys and seeds ---------------------------------------------------------------------------


def test_pair_seed_is_the_same_from_both_ends() -> None:
    alice, bob = fixed_key("alice"), fixed_key("bob")
    from_alice = secagg.agree(alice, secagg.public_text(bob))
    from_bob = secagg.agree(bob, secagg.public_text(alice))
    assert from_alice == from_bob and len(from_alice) == 32
    a, b = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
    assert secagg.pair_seed(from_alice, ROUND, a, b) == secagg.pair_seed(from_bob, ROUND, b, a)
    assert secagg.share_key(from_alice, ROUND, a, b) == secagg.share_key(from_bob, ROUND, b, a)


def test_pair_seed_is_bound_to_the_round_and_the_pair() -> None:
    shared = secagg.agree(fixed_key("alice"), secagg.public_text(fixed_key("bob")))
    a, b, c = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"
    seed = secagg.pair_seed(shared, ROUND, a, b)
    others = [
        secagg.pair_seed(shared, ROUND + "-2", a, b),
        secagg.pair_seed(shared, ROUND, a, c),
        secagg.pair_seed(shared, ROUND, c, b),
        secagg.share_key(shared, ROUND, a, b),  # a share key is never a mask seed
        secagg.self_seed(shared, ROUND, a),
    ]
    assert len({seed, *others}) == len(others) + 1
    assert len(seed) == 32


def test_self_seed_is_bound_to_the_round_and_the_node() -> None:
    b = fixed("b")
    seeds = {
        secagg.self_seed(b, ROUND, "aaaaaaaaaaaaaaaa"),
        secagg.self_seed(b, ROUND, "bbbbbbbbbbbbbbbb"),
        secagg.self_seed(b, ROUND + "-2", "aaaaaaaaaaaaaaaa"),
        secagg.self_seed(fixed("other b"), ROUND, "aaaaaaaaaaaaaaaa"),
    }
    assert len(seeds) == 4


def test_keys_round_trip_through_bytes_and_text() -> None:
    key = secagg.new_private_key()
    again = secagg.private_from_bytes(secagg.private_bytes(key))
    assert secagg.public_text(again) == secagg.public_text(key)
    assert len(secagg.public_text(key)) == 43
    secagg.public_from_text(secagg.public_text(key))
    with pytest.raises(SecAggError):
        secagg.private_from_bytes(b"\x01" * 31)


@pytest.mark.parametrize(
    "point",
    [
        b"\x00" * 32,  # the all-zero point
        b"\x01" + b"\x00" * 31,  # u = 1, of order 4
        bytes.fromhex(
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"
        ),  # order 8
    ],
    ids=["zero", "order-4", "order-8"],
)
def test_agree_refuses_a_low_order_key(point: bytes) -> None:
    with pytest.raises(SecAggError):
        secagg.agree(fixed_key("alice"), b64(point))


@pytest.mark.parametrize("text", ["", "AAAA", b64(b"\x09" * 31), b64(b"\x09" * 33), "!!"])
def test_a_malformed_public_key_is_refused(text: str) -> None:
    with pytest.raises(SecAggError):
        secagg.public_from_text(text)
    with pytest.raises(SecAggError):
        secagg.agree(fixed_key("alice"), text)


# --- masks ------------------------------------------------------------------------------------


@given(
    st.lists(st.binary(min_size=32, max_size=32), min_size=2, max_size=6, unique=True),
    st.integers(min_value=1, max_value=20),
)
@settings(max_examples=50, deadline=None)
def test_pair_masks_cancel(seeds: list[bytes], length: int) -> None:
    ids = [f"{k:016x}" for k in range(len(seeds))]
    total = np.zeros(length, dtype=np.uint64)
    for (i, j), seed in zip(itertools.combinations(ids, 2), itertools.cycle(seeds)):
        total = total + secagg.pair_mask(seed, length, i, j) + secagg.pair_mask(seed, length, j, i)
    assert not total.any()


def test_pair_mask_adds_for_the_larger_peer_and_subtracts_for_the_smaller() -> None:
    seed = fixed("pair")
    stream = secagg.prg(seed, 6)
    assert np.array_equal(secagg.pair_mask(seed, 6, "1" * 16, "2" * 16), stream)
    assert np.array_equal(secagg.pair_mask(seed, 6, "2" * 16, "1" * 16), np.uint64(0) - stream)


def test_unmask_refuses_a_vector_of_the_wrong_length() -> None:
    with pytest.raises(SecAggError):
        secagg.unmask(
            [np.zeros(3, dtype=np.uint64)], 4, round_id=ROUND, self_seeds={}, dropped_pairs=[]
        )


# --- a whole round, in-process ----------------------------------------------------------------


@dataclass
class Party:
    key_id: str
    c: X25519PrivateKey
    s: X25519PrivateKey
    b: bytes
    values: list[int]


def make_parties(count: int, length: int, label: str) -> list[Party]:
    """Nodes with fixed keys and ids that do not sort in creation order; values incl. negatives."""
    rng = random.Random(label)
    parties = []
    for k in range(count):
        tag = f"{label}|{k}"
        values = [rng.randint(-(2**40), 2**40) for _ in range(length - 4)]
        values += [-(2**59), 2**59, -1, 0]  # big but the sum of seven still fits
        parties.append(
            Party(
                key_id=hashlib.sha256(tag.encode()).hexdigest()[:16],
                c=fixed_key(f"{tag}|c"),
                s=fixed_key(f"{tag}|s"),
                b=fixed(f"{tag}|b"),
                values=values,
            )
        )
    return parties


def play_round(roster: list[Party], submitting: list[Party], threshold: int) -> list[int]:
    """Phases 2 to 4 of design §9 over the nodes that shared (``roster``): shares, masked
    vectors from ``submitting``, then what the aggregator does with the reveals."""
    by_id = {p.key_id: p for p in roster}
    positions = {key_id: k + 1 for k, key_id in enumerate(sorted(by_id))}
    n = len(roster)
    c_public = {p.key_id: secagg.public_text(p.c) for p in roster}
    s_public = {p.key_id: secagg.public_text(p.s) for p in roster}

    # Phase 2: every node splits s and b and seals one share pair to each peer.
    inbox: dict[str, dict[str, secagg.SharePair]] = {key_id: {} for key_id in by_id}
    for sender in roster:
        s_shares = dict(secagg.split(secagg.private_bytes(sender.s), n, threshold))
        b_shares = dict(secagg.split(sender.b, n, threshold))
        for recipient, x in positions.items():
            pair = secagg.SharePair(sender.key_id, recipient, x, s_shares[x], b_shares[x])
            if recipient == sender.key_id:
                inbox[recipient][sender.key_id] = pair
                continue
            shared = secagg.agree(sender.c, c_public[recipient])
            key = secagg.share_key(shared, ROUND, sender.key_id, recipient)
            sealed = secagg.seal(pair, key, ROUND)
            opened_key = secagg.share_key(
                secagg.agree(by_id[recipient].c, c_public[sender.key_id]),
                ROUND,
                recipient,
                sender.key_id,
            )
            inbox[recipient][sender.key_id] = secagg.open_sealed(
                sealed, opened_key, ROUND, sender.key_id, recipient
            )

    # Phase 3: masked vectors, over every peer that shared, through the wire encoding.
    length = len(roster[0].values)
    wire = {}
    for p in submitting:
        seeds = {
            peer: secagg.pair_seed(secagg.agree(p.s, s_public[peer]), ROUND, p.key_id, peer)
            for peer in by_id
            if peer != p.key_id
        }
        masked = secagg.masked_input(
            secagg.encode(p.values), round_id=ROUND, me=p.key_id, b=p.b, pair_seeds=seeds
        )
        wire[p.key_id] = secagg.to_text(masked)

    # Phase 4: each live node reveals b shares of live peers and s shares of dropped ones; the
    # aggregator uses the first t reveals.
    live = sorted(wire)
    dropped = sorted(set(by_id) - set(live))
    reveals = [(positions[key_id], inbox[key_id]) for key_id in live][:threshold]
    assert len(reveals) == threshold, "too few live nodes to reconstruct"
    weights = secagg.lagrange_weights([x for x, _ in reveals])

    def recover(owner: str, kind: str) -> bytes:
        values = [getattr(shares[owner], f"{kind}_share") for _, shares in reveals]
        return secagg.combine(values, weights)

    self_seeds = {key_id: recover(key_id, "b") for key_id in live}
    dropped_pairs = []
    for d in dropped:
        private = secagg.private_from_bytes(recover(d, "s"))
        assert secagg.public_text(private) == s_public[d]
        for key_id in live:
            seed = secagg.pair_seed(secagg.agree(private, s_public[key_id]), ROUND, key_id, d)
            dropped_pairs.append((key_id, d, seed))
    total = secagg.unmask(
        [secagg.from_text(wire[key_id], length) for key_id in live],
        length,
        round_id=ROUND,
        self_seeds=self_seeds,
        dropped_pairs=dropped_pairs,
    )
    return secagg.decode(total)


def plain_sum(parties: list[Party]) -> list[int]:
    return [sum(column) for column in zip(*(p.values for p in parties), strict=True)]


def test_default_threshold_of_seven_is_five() -> None:
    assert secagg.default_threshold(7) == 5
    assert secagg.minimum_threshold(7) == 4
    for n in range(2, 40):
        t = secagg.default_threshold(n)
        assert secagg.minimum_threshold(n) <= t <= n and 3 * t >= 2 * n > 3 * (t - 1)


def test_a_round_where_everybody_submits_sums_exactly() -> None:
    parties = make_parties(7, 24, "all")
    assert plain_sum(parties) != [0] * 24 and min(plain_sum(parties)) < 0
    assert play_round(parties, parties, secagg.default_threshold(7)) == plain_sum(parties)


@pytest.mark.parametrize("drop", [1, 2])
def test_dropouts_after_sharing_leave_the_sum_of_the_live_nodes(drop: int) -> None:
    parties = make_parties(7, 24, f"after-{drop}")
    live = parties[: 7 - drop]
    assert play_round(parties, live, secagg.default_threshold(7)) == plain_sum(live)


def test_dropouts_before_sharing_never_enter_the_roster() -> None:
    parties = make_parties(7, 24, "before")
    roster = parties[1:]  # parties[0] advertised keys, then sent no shares
    assert play_round(roster, roster, secagg.default_threshold(7)) == plain_sum(roster)


def test_dropouts_before_and_after_sharing_together() -> None:
    parties = make_parties(7, 24, "both")
    roster = parties[:6]
    live = roster[1:]
    assert play_round(roster, live, secagg.default_threshold(7)) == plain_sum(live)


def test_the_masks_of_a_dropped_node_stay_unless_removed() -> None:
    parties = make_parties(4, 8, "leftover")
    roster, live = parties, parties[:3]
    pair_seeds = {
        p.key_id: {
            q.key_id: secagg.pair_seed(
                secagg.agree(p.s, secagg.public_text(q.s)), ROUND, p.key_id, q.key_id
            )
            for q in roster
            if q is not p
        }
        for p in roster
    }
    masked = [
        secagg.masked_input(
            secagg.encode(p.values),
            round_id=ROUND,
            me=p.key_id,
            b=p.b,
            pair_seeds=pair_seeds[p.key_id],
        )
        for p in live
    ]
    self_seeds = {p.key_id: p.b for p in live}
    without = secagg.unmask(masked, 8, round_id=ROUND, self_seeds=self_seeds, dropped_pairs=[])
    assert secagg.decode(without) != plain_sum(live)
    d = parties[3].key_id
    dropped_pairs = [(p.key_id, d, pair_seeds[p.key_id][d]) for p in live]
    removed = secagg.unmask(
        masked, 8, round_id=ROUND, self_seeds=self_seeds, dropped_pairs=dropped_pairs
    )
    assert secagg.decode(removed) == plain_sum(live)


# --- a masked vector looks uniform ------------------------------------------------------------

UNIFORM_LENGTH = 4096


def masked_vector(values: list[int], *, remove_self_mask: bool = False) -> np.ndarray:
    """Node 0's masked vector in a fixed three-node round."""
    ids = ["0123456789abcdef", "456789abcdef0123", "89abcdef01234567"]
    s_keys = {key_id: fixed_key(f"uniform|{key_id}|s") for key_id in ids}
    me, b = ids[1], fixed("uniform|b")
    seeds = {
        peer: secagg.pair_seed(
            secagg.agree(s_keys[me], secagg.public_text(s_keys[peer])), ROUND, me, peer
        )
        for peer in ids
        if peer != me
    }
    masked = secagg.masked_input(
        secagg.encode(values), round_id=ROUND, me=me, b=b, pair_seeds=seeds
    )
    if remove_self_mask:  # what an aggregator sees of a live node once it has its b
        masked = masked - secagg.prg(secagg.self_seed(b, ROUND, me), len(values))
    return masked


INPUTS = {
    "zeros": [0] * UNIFORM_LENGTH,
    "small": [(k % 7) - 3 for k in range(UNIFORM_LENGTH)],
}


@pytest.mark.parametrize("remove_self_mask", [False, True], ids=["masked", "pair-masks-only"])
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_a_masked_vector_is_uniform(name: str, remove_self_mask: bool) -> None:
    values = INPUTS[name]
    masked = masked_vector(values, remove_self_mask=remove_self_mask)
    assert secagg.decode(masked) != values
    assert np.count_nonzero(masked == secagg.encode(values)) <= 1
    counts = np.bincount((masked >> np.uint64(58)).astype(np.int64), minlength=64)
    assert len(counts) == 64 and counts.sum() == UNIFORM_LENGTH
    assert stats.chisquare(counts).pvalue > 1e-6
    bits = np.array([(masked >> np.uint64(k)) & np.uint64(1) for k in range(64)], dtype=float)
    frequencies = bits.mean(axis=1)
    # σ = 0.5/√4096 ≈ 0.0078: six σ, for every one of the 64 bits.
    assert np.all(np.abs(frequencies - 0.5) < 0.047), frequencies


# --- Shamir -----------------------------------------------------------------------------------


def test_any_threshold_of_the_shares_reconstructs() -> None:
    secret = fixed("shamir")
    shares = secagg.split(secret, 7, 5)
    assert [x for x, _ in shares] == list(range(1, 8))
    assert all(0 <= y < secagg.PRIME for _, y in shares)
    for size in (5, 6, 7):
        for subset in itertools.combinations(shares, size):
            weights = secagg.lagrange_weights([x for x, _ in subset])
            assert secagg.combine([y for _, y in subset], weights) == secret


def test_fewer_than_threshold_shares_give_something_else() -> None:
    secret = fixed("shamir-short")
    shares = secagg.split(secret, 7, 5)
    for subset in itertools.combinations(shares, 4):
        weights = secagg.lagrange_weights([x for x, _ in subset])
        value = sum(y * w for (_, y), w in zip(subset, weights, strict=True)) % secagg.PRIME
        assert value != int.from_bytes(secret, "big")
        with pytest.raises(SecAggError):  # almost surely ≥ 2²⁵⁶: p(not) ≈ 2⁻²⁶⁵
            secagg.combine([y for _, y in subset], weights)


def test_lagrange_weights_agree_with_shamirs_interpolate() -> None:
    rng = random.Random("lagrange")
    for _ in range(20):
        n = rng.randint(2, 10)
        t = rng.randint(2, n)
        secret = rng.randbytes(32)
        shares = secagg.split(secret, n, t)
        subset = rng.sample(shares, rng.randint(t, n))
        xs, ys = [x for x, _ in subset], [y for _, y in subset]
        oracle = shamirs.interpolate(
            [shamirs.share(x, y, secagg.PRIME) for x, y in subset], threshold=len(subset)
        )
        assert oracle == int.from_bytes(secret, "big")
        assert secagg.combine(ys, secagg.lagrange_weights(xs)) == secret
        # On arbitrary points too, where the value at zero is any field element.
        points = [(x, rng.randrange(secagg.PRIME)) for x in xs]
        weights = secagg.lagrange_weights(xs)
        ours = sum(y * w for (_, y), w in zip(points, weights, strict=True)) % secagg.PRIME
        theirs = shamirs.interpolate(
            [shamirs.share(x, y, secagg.PRIME) for x, y in points], threshold=len(points)
        )
        assert ours == theirs


@pytest.mark.parametrize("xs", [[1, 1], [1, 2, 3, 2], [0, 1], [1, secagg.PRIME], [-1, 2]])
def test_lagrange_weights_refuse_bad_positions(xs: list[int]) -> None:
    with pytest.raises(SecAggError):
        secagg.lagrange_weights(xs)


def test_split_and_combine_refuse_bad_arguments() -> None:
    with pytest.raises(SecAggError):
        secagg.split(b"\x01" * 31, 5, 3)
    for holders, threshold in ((5, 1), (5, 6), (3, 0)):
        with pytest.raises(SecAggError):
            secagg.split(b"\x01" * 32, holders, threshold)
    with pytest.raises(SecAggError):
        secagg.combine([1, 2, 3], [1, 2])


# --- sealed share pairs -----------------------------------------------------------------------

SENDER, RECIPIENT = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"


def sealed_pair() -> tuple[secagg.SharePair, bytes, str]:
    pair = secagg.SharePair(SENDER, RECIPIENT, 2, secagg.PRIME - 1, 12345)
    key = fixed("share key")
    return pair, key, secagg.seal(pair, key, ROUND)


def test_seal_and_open_round_trip() -> None:
    pair, key, sealed = sealed_pair()
    assert secagg.open_sealed(sealed, key, ROUND, SENDER, RECIPIENT) == pair
    assert secagg.seal(pair, key, ROUND) != sealed  # a fresh nonce each time
    nonce = b"\x07" * 12
    fixed_nonce = secagg.seal(pair, key, ROUND, nonce=nonce)
    assert fixed_nonce == secagg.seal(pair, key, ROUND, nonce=nonce)
    raw = base64.urlsafe_b64decode(fixed_nonce + "=" * (-len(fixed_nonce) % 4))
    assert raw[:12] == nonce and len(raw) == 12 + 4 + 2 * secagg.SHARE_BYTES + 16


@pytest.mark.parametrize(
    "change",
    ["key", "round", "sender", "recipient", "swapped", "truncated", "nonce-only", "empty", "flip"],
)
def test_open_refuses_what_was_not_sealed_for_it(change: str) -> None:
    _, key, sealed = sealed_pair()
    raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
    args = {"text": sealed, "key": key, "round_id": ROUND, "sender": SENDER, "recipient": RECIPIENT}
    if change == "key":
        args["key"] = fixed("another key")
    elif change == "round":
        args["round_id"] = ROUND + "-2"
    elif change == "sender":
        args["sender"] = "cccccccccccccccc"
    elif change == "recipient":
        args["recipient"] = "cccccccccccccccc"
    elif change == "swapped":
        args["sender"], args["recipient"] = RECIPIENT, SENDER
    elif change == "truncated":
        args["text"] = b64(raw[:-1])
    elif change == "nonce-only":
        args["text"] = b64(raw[:10])
    elif change == "empty":
        args["text"] = ""
    elif change == "flip":
        args["text"] = b64(raw[:20] + bytes([raw[20] ^ 1]) + raw[21:])
    with pytest.raises(SecAggError):
        secagg.open_sealed(**args)  # type: ignore[arg-type]


def test_open_refuses_a_share_out_of_the_field() -> None:
    key = fixed("share key")
    too_big = secagg.SharePair(SENDER, RECIPIENT, 1, secagg.PRIME, 0)
    with pytest.raises(SecAggError):
        secagg.open_sealed(secagg.seal(too_big, key, ROUND), key, ROUND, SENDER, RECIPIENT)
