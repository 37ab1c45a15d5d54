"""RFC 9497's ristretto255-SHA512 OPRF-mode vectors, and the threshold split of its key."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import oprf, sector

# RFC 9497 Appendix A.1.1 (OPRF(ristretto255, SHA-512), mode 0x00).
SEED = bytes.fromhex("a3" * 32)
KEY_INFO = bytes.fromhex("74657374206b6579")
SK_SM = "5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e"
BLIND = "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706"
VECTORS = [
    (
        "00",
        "609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c",
        "7ec6578ae5120958eb2db1745758ff379e77cb64fe77b0b2d8cc917ea0869c7e",
        "527759c3d9366f277d8c6020418d96bb393ba2afb20ff90df23fb7708264e2f3"
        "ab9135e3bd69955851de4b1f9fe8a0973396719b7912ba9ee8aa7d0b5e24bcf6",
    ),
    (
        "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
        "da27ef466870f5f15296299850aa088629945a17d1f5b7f5ff043f76b3c06418",
        "b4cbf5a4f1eeda5a63ce7b77c7d23f461db3fcab0dd28e4e17cecb5c90d02c25",
        "f4a74c9c592497375e796aa837e907b1a045d34306a749db9f34221f7e750cb4"
        "f2a6413a6bf6fa5e19ba6348eb673934a722a7ede2e7621306d18951e7cf2c73",
    ),
]


def test_derive_key_pair_matches_rfc() -> None:
    assert oprf.scalar_to_bytes(oprf.derive_key(SEED, KEY_INFO)).hex() == SK_SM


@pytest.mark.parametrize(("data", "blinded", "evaluated", "output"), VECTORS)
def test_rfc_9497_vectors(data: str, blinded: str, evaluated: str, output: str) -> None:
    key = oprf.scalar_from_bytes(bytes.fromhex(SK_SM))
    r = oprf.scalar_from_bytes(bytes.fromhex(BLIND))
    _, element = oprf.blind(bytes.fromhex(data), r)
    assert element.hex() == blinded
    assert oprf.evaluate(key, element).hex() == evaluated
    assert oprf.finalize(bytes.fromhex(data), r, bytes.fromhex(evaluated)).hex() == output
    assert oprf.direct(key, bytes.fromhex(data)).hex() == output


def test_expand_message_xmd_matches_rfc_9380() -> None:
    # RFC 9380 Appendix K.3 (expand_message_xmd, SHA-512), msg "abc", len_in_bytes 0x80.
    dst = b"QUUX-V01-CS02-with-expander-SHA512-256"
    assert oprf.expand_message_xmd(b"abc", dst, 0x80).hex() == (
        "7f1dddd13c08b543f2e2037b14cefb255b44c83cc397c1786d975653e36a6b11"
        "bdd7732d8b38adb4a0edc26a0cef4bb45217135456e58fbca1703cd6032cb134"
        "7ee720b87972d63fbf232587043ed2901bce7f22610c0419751c065922b48843"
        "1851041310ad659e4b23520e1772ab29dcdeb2002222a363f0c2b1c972b3efe1"
    )


@pytest.mark.parametrize(("t", "n"), [(2, 3), (3, 5), (1, 1), (3, 3)])
def test_any_t_of_n_give_the_unsplit_output(t: int, n: int) -> None:
    key = oprf.new_key()
    shares = oprf.split(key, t, n)
    data = sector.oprf_input("ada@example.nl", 2025)
    expected = oprf.direct(key, data)
    r, blinded = oprf.blind(data)
    evaluations = {s.index: oprf.evaluate(s.value, blinded) for s in shares}
    for subset in itertools.combinations(sorted(evaluations), t):
        got = oprf.combine_and_finalize(data, r, [(i, evaluations[i]) for i in subset], t)
        assert got == expected


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=1, max_value=oprf.L - 1), st.data())
def test_shares_recover_the_key_by_lagrange(key: int, data: st.DataObject) -> None:
    n = data.draw(st.integers(2, 7))
    t = data.draw(st.integers(1, n))
    shares = oprf.split(key, t, n)
    chosen = data.draw(st.permutations(shares))[:t]
    lambdas = oprf.lagrange_at_zero([s.index for s in chosen])
    assert sum(lam * s.value for lam, s in zip(lambdas, chosen, strict=True)) % oprf.L == key


def test_fewer_than_t_evaluations_fail_cleanly() -> None:
    key = oprf.new_key()
    shares = oprf.split(key, 2, 3)
    r, blinded = oprf.blind(b"x")
    with pytest.raises(oprf.OprfError, match="exactly 2"):
        oprf.combine_and_finalize(b"x", r, [(1, oprf.evaluate(shares[0].value, blinded))], 2)


def test_fewer_than_t_shares_give_another_output() -> None:
    """One share used as if it were the key does not give the pseudonym."""
    key = oprf.new_key()
    share = oprf.split(key, 2, 3)[0]
    assert oprf.direct(share.value, b"x") != oprf.direct(key, b"x")


def test_bad_elements_and_indices_are_refused() -> None:
    with pytest.raises(oprf.OprfError):
        oprf.evaluate(5, bytes(32))  # the identity
    with pytest.raises(oprf.OprfError):
        oprf.evaluate(5, b"\xff" * 32)  # not an encoding
    with pytest.raises(oprf.OprfError):
        oprf.lagrange_at_zero([1, 1])
    with pytest.raises(oprf.OprfError):
        oprf.scalar_from_bytes(oprf.L.to_bytes(32, "little"))


def test_normalise_email() -> None:
    assert sector.normalise("  Ada.Lovelace@Example.NL ") == "ada.lovelace@example.nl"
    assert sector.normalise("mailto:ADA@example.nl") == "ada@example.nl"
    assert sector.normalise("ｕｓｅｒ@example.nl") == "user@example.nl"  # NFKC: full-width
    assert sector.normalise("no address") is None
    assert sector.normalise("") is None
    assert sector.normalise("a@b") is None
    assert sector.normalise(" CJP 1234-5678 ", kind="cjp") == "cjp12345678"


def test_years_and_kinds_are_separate_inputs() -> None:
    key = oprf.new_key()
    a = oprf.direct(key, sector.oprf_input("ada@example.nl", 2025))
    b = oprf.direct(key, sector.oprf_input("ada@example.nl", 2026))
    c = oprf.direct(key, sector.oprf_input("ada@example.nl", 2025, kind="cjp"))
    assert len({a, b, c}) == 3
    value = sector.stored_value(a)
    assert len(value) == 32
    assert bytes.fromhex(value) == a[:16]
