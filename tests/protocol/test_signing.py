"""Ed25519 envelopes: round trip, tampering, freshness, replay, keys, and RFC 8785 bytes."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from pydantic import ValidationError

from protocol.canonical import canonical_bytes
from protocol.signing import (
    BadSignature,
    Envelope,
    MemoryNonceStore,
    ReplayedMessage,
    SignatureError,
    SigningKey,
    StaleMessage,
    StaticKeyRing,
    UnknownKey,
    Verifier,
    WrongMessageType,
    fingerprint,
    key_id_of,
    public_key_from_text,
    public_key_to_text,
    sign,
    verify_once,
)

T0 = datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
PAYLOAD: dict[str, Any] = {
    "query_id": "q-1",
    "values": [1, -2, 3],
    "nested": {"b": "é€😀", "a": None, "flag": True},
    "rho": 0.125,
}


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey.generate()


def _verifier(*keys: SigningKey, **kwargs: Any) -> Verifier:
    return Verifier(StaticKeyRing.of(*(k.public for k in keys)), MemoryNonceStore(), **kwargs)


def _raw(key: SigningKey) -> bytes:
    return key.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# -- round trip ---------------------------------------------------------------------------


def test_round_trip(key: SigningKey) -> None:
    envelope = sign("query", PAYLOAD, key, now=T0)
    assert envelope.key_id == key.key_id
    assert envelope.created_at == T0
    payload = _verifier(key).verify(envelope, "query", now=T0 + timedelta(seconds=1))
    assert payload == PAYLOAD


def test_round_trip_through_json(key: SigningKey) -> None:
    envelope = sign("answer", PAYLOAD, key, now=T0)
    wire = envelope.model_dump_json()
    received = Envelope.model_validate_json(wire)
    assert received == envelope
    assert _verifier(key).verify(received, "answer", now=T0) == PAYLOAD


def test_created_at_in_another_time_zone_is_the_same_instant(key: SigningKey) -> None:
    envelope = sign("query", PAYLOAD, key, now=T0.astimezone(timezone(timedelta(hours=2))))
    assert envelope.created_at.utcoffset() == timedelta(0)
    shifted = envelope.model_copy(
        update={"created_at": T0.astimezone(timezone(timedelta(hours=-5)))}
    )
    assert _verifier(key).verify(shifted, "query", now=T0) == PAYLOAD


def test_payload_returned_is_a_copy(key: SigningKey) -> None:
    envelope = sign("query", {"a": 1}, key, now=T0)
    payload = _verifier(key).verify(envelope, "query", now=T0)
    payload["a"] = 2
    assert envelope.payload == {"a": 1}


def test_wire_format_is_domain_separated_rfc8785(key: SigningKey) -> None:
    """Another implementation can rebuild the signed bytes from this description alone."""
    envelope = sign("query", {"z": 1, "a": [True, None]}, key, now=T0)
    header = (
        '{"created_at":"2025-03-14T15:09:26.535897+00:00","key_id":"'
        + envelope.key_id
        + '","nonce":"'
        + envelope.nonce
        + '","payload":{"a":[true,null],"z":1},"type":"query"}'
    )
    signature = base64.urlsafe_b64decode(envelope.signature + "=" * (-len(envelope.signature) % 4))
    assert len(signature) == 64
    key.public.verify(signature, b"publieksdata-signature-v1\n" + header.encode())
    with pytest.raises(InvalidSignature):
        key.public.verify(signature, header.encode())  # the domain prefix is part of the input


# -- tampering ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"payload": {**PAYLOAD, "rho": 0.25}},
        {"payload": {**PAYLOAD, "nested": {**PAYLOAD["nested"], "a": 0}}},
        {"payload": {**PAYLOAD, "values": [1, -2, 4]}},
        {"payload": {**PAYLOAD, "extra": 1}},
        {"payload": {k: v for k, v in PAYLOAD.items() if k != "rho"}},
        {"created_at": T0 + timedelta(microseconds=1)},
        {"nonce": "A" * 24},
    ],
    ids=["value", "nested", "list", "added", "removed", "created_at", "nonce"],
)
def test_tampering_is_detected(key: SigningKey, change: dict[str, Any]) -> None:
    envelope = sign("query", PAYLOAD, key, now=T0)
    forged = envelope.model_copy(update=change)
    with pytest.raises(BadSignature):
        _verifier(key).verify(forged, "query", now=T0)
    with pytest.raises(BadSignature):
        verify_once(forged, "query", key.public)


def test_tampered_type_is_detected(key: SigningKey) -> None:
    envelope = sign("query", PAYLOAD, key, now=T0)
    forged = envelope.model_copy(update={"type": "answer"})
    with pytest.raises(BadSignature):
        _verifier(key).verify(forged, "answer", now=T0)


def test_tampered_key_id_of_other_trusted_key(key: SigningKey, other_key: SigningKey) -> None:
    envelope = sign("query", PAYLOAD, key, now=T0)
    forged = envelope.model_copy(update={"key_id": other_key.key_id})
    with pytest.raises(BadSignature):
        _verifier(key, other_key).verify(forged, "query", now=T0)
    with pytest.raises(UnknownKey):
        _verifier(key).verify(forged, "query", now=T0)


def test_signature_by_another_key(key: SigningKey, other_key: SigningKey) -> None:
    genuine = sign("query", PAYLOAD, key, now=T0)
    other = sign("query", PAYLOAD, other_key, now=T0)
    forged = genuine.model_copy(update={"signature": other.signature})
    with pytest.raises(BadSignature):
        _verifier(key).verify(forged, "query", now=T0)


@pytest.mark.parametrize("position", [0, 40, 85])
def test_flipped_signature_character(key: SigningKey, position: int) -> None:
    envelope = sign("query", PAYLOAD, key, now=T0)
    sig = envelope.signature
    flipped = sig[:position] + ("B" if sig[position] != "B" else "C") + sig[position + 1 :]
    forged = envelope.model_copy(update={"signature": flipped})
    with pytest.raises(BadSignature):
        _verifier(key).verify(forged, "query", now=T0)


def test_undecodable_signature_is_bad_signature(key: SigningKey) -> None:
    envelope = sign("query", PAYLOAD, key, now=T0)
    forged = envelope.model_copy(update={"signature": "A" * 85})  # not valid base64
    with pytest.raises(BadSignature):
        _verifier(key).verify(forged, "query", now=T0)
    with pytest.raises(BadSignature):
        verify_once(forged, "query", key.public)


def test_forged_copy_does_not_burn_the_nonce(key: SigningKey) -> None:
    genuine = sign("query", PAYLOAD, key, now=T0)
    verifier = _verifier(key)
    forged = genuine.model_copy(update={"payload": {"evil": True}})
    with pytest.raises(BadSignature):
        verifier.verify(forged, "query", now=T0)
    assert verifier.verify(genuine, "query", now=T0) == PAYLOAD


# -- type, key, freshness, replay ---------------------------------------------------------


def test_wrong_message_type(key: SigningKey) -> None:
    envelope = sign("answer", PAYLOAD, key, now=T0)
    with pytest.raises(WrongMessageType, match="expected a 'query' message, got 'answer'"):
        _verifier(key).verify(envelope, "query", now=T0)
    with pytest.raises(WrongMessageType):
        verify_once(envelope, "query", key.public)


def test_unknown_key(key: SigningKey, other_key: SigningKey) -> None:
    envelope = sign("query", PAYLOAD, key, now=T0)
    with pytest.raises(UnknownKey, match=key.key_id):
        _verifier(other_key).verify(envelope, "query", now=T0)
    with pytest.raises(UnknownKey):
        verify_once(envelope, "query", other_key.public)


def test_stale_message(key: SigningKey) -> None:
    envelope = sign("query", PAYLOAD, key, now=T0)
    max_age = timedelta(minutes=5)
    with pytest.raises(StaleMessage, match="more than 300 s ago"):
        _verifier(key, max_age=max_age).verify(
            envelope, "query", now=T0 + max_age + timedelta(microseconds=1)
        )
    assert _verifier(key, max_age=max_age).verify(envelope, "query", now=T0 + max_age)


def test_custom_max_age(key: SigningKey) -> None:
    envelope = sign("query", PAYLOAD, key, now=T0)
    now = T0 + timedelta(hours=1)
    with pytest.raises(StaleMessage):
        _verifier(key).verify(envelope, "query", now=now)
    assert _verifier(key, max_age=timedelta(hours=2)).verify(envelope, "query", now=now)


def test_future_dated_message(key: SigningKey) -> None:
    envelope = sign("query", PAYLOAD, key, now=T0)
    skew = timedelta(seconds=30)
    with pytest.raises(StaleMessage, match="future"):
        _verifier(key, max_skew=skew).verify(
            envelope, "query", now=T0 - skew - timedelta(microseconds=1)
        )
    assert _verifier(key, max_skew=skew).verify(envelope, "query", now=T0 - skew)


def test_verify_uses_the_clock_by_default(key: SigningKey) -> None:
    assert _verifier(key).verify(sign("query", PAYLOAD, key), "query") == PAYLOAD
    with pytest.raises(StaleMessage):
        _verifier(key).verify(sign("query", PAYLOAD, key, now=T0), "query")


def test_replay_is_refused_and_a_resigned_copy_accepted(key: SigningKey) -> None:
    verifier = _verifier(key)
    first = sign("query", PAYLOAD, key, now=T0)
    assert verifier.verify(first, "query", now=T0) == PAYLOAD
    with pytest.raises(ReplayedMessage):
        verifier.verify(first, "query", now=T0 + timedelta(seconds=1))
    # The same bytes again, even via JSON, are a replay.
    with pytest.raises(ReplayedMessage):
        verifier.verify(Envelope.model_validate_json(first.model_dump_json()), "query", now=T0)
    second = sign("query", PAYLOAD, key, now=T0)
    assert second.nonce != first.nonce
    assert verifier.verify(second, "query", now=T0) == PAYLOAD


def test_stale_message_does_not_burn_the_nonce(key: SigningKey) -> None:
    verifier = _verifier(key)
    envelope = sign("query", PAYLOAD, key, now=T0)
    with pytest.raises(StaleMessage):
        verifier.verify(envelope, "query", now=T0 + timedelta(days=1))
    assert verifier.verify(envelope, "query", now=T0) == PAYLOAD


def test_nonce_store_is_per_key() -> None:
    store = MemoryNonceStore()
    assert store.remember("k1", "nonce-aaaaaaaaaaaa", T0)
    assert not store.remember("k1", "nonce-aaaaaaaaaaaa", T0)
    assert store.remember("k2", "nonce-aaaaaaaaaaaa", T0)


def test_nonces_are_random(key: SigningKey) -> None:
    nonces = {sign("query", PAYLOAD, key, now=T0).nonce for _ in range(200)}
    assert len(nonces) == 200
    for nonce in nonces:
        assert re.fullmatch(r"[A-Za-z0-9_-]{24}", nonce)


def test_verify_once_has_no_freshness_or_replay(key: SigningKey) -> None:
    old = sign("answer", PAYLOAD, key, now=datetime(2001, 1, 1, tzinfo=UTC))
    assert verify_once(old, "answer", key.public) == PAYLOAD
    assert verify_once(old, "answer", key.public) == PAYLOAD


def test_error_codes() -> None:
    classes = [UnknownKey, BadSignature, StaleMessage, ReplayedMessage, WrongMessageType]
    assert all(issubclass(cls, SignatureError) for cls in classes)
    codes = [cls.code for cls in classes]
    assert len(set(codes)) == len(codes)
    assert codes == [
        "unknown_key",
        "bad_signature",
        "stale_message",
        "replayed_message",
        "wrong_message_type",
    ]


# -- keys ---------------------------------------------------------------------------------


def test_key_id_and_fingerprint_format(key: SigningKey) -> None:
    digest = hashlib.sha256(_raw(key)).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{16}", key.key_id)
    assert key.key_id == key_id_of(key.public) == digest[:16]
    fp = fingerprint(key.public)
    assert re.fullmatch(r"([0-9A-F]{4} ){15}[0-9A-F]{4}", fp)
    assert fp.replace(" ", "") == digest.upper()
    assert fp.replace(" ", "").lower().startswith(key.key_id)


def test_different_keys_have_different_ids(key: SigningKey, other_key: SigningKey) -> None:
    assert key.key_id != other_key.key_id
    assert fingerprint(key.public) != fingerprint(other_key.public)


def test_public_key_text_round_trip(key: SigningKey) -> None:
    text = public_key_to_text(key.public)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", text)
    assert base64.urlsafe_b64decode(text + "=") == _raw(key)
    for variant in (text, f"  {text}\n", text + "="):
        assert key_id_of(public_key_from_text(variant)) == key.key_id


@pytest.mark.parametrize("text", ["", "not a key", "A" * 42, "A" * 44, "%%%%"])
def test_public_key_from_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match="32-byte Ed25519 public key"):
        public_key_from_text(text)


def test_pem_round_trip(key: SigningKey) -> None:
    pem = key.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = SigningKey.from_pem(pem)
    assert loaded.key_id == key.key_id
    envelope = sign("query", PAYLOAD, loaded, now=T0)
    assert verify_once(envelope, "query", key.public) == PAYLOAD


def test_pem_of_another_key_type_is_refused() -> None:
    ec = generate_private_key(SECP256R1())
    pem = ec.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="Ed25519"):
        SigningKey.from_pem(pem)


@pytest.mark.parametrize(
    "change",
    [
        {"key_id": "ABCDEF0123456789"},
        {"key_id": "abc"},
        {"nonce": "short"},
        {"nonce": "has space in the nonce!"},
        {"type": ""},
        {"signature": "x" * 20},
        {"unexpected": 1},
    ],
)
def test_envelope_shape_is_validated(key: SigningKey, change: dict[str, Any]) -> None:
    data = json.loads(sign("query", PAYLOAD, key, now=T0).model_dump_json())
    data.update(change)
    with pytest.raises(ValidationError):
        Envelope.model_validate(data)


# -- canonical bytes (RFC 8785) -----------------------------------------------------------


def test_canonical_key_order_and_whitespace() -> None:
    assert canonical_bytes({"b": 1, "a": {"d": [3, 2], "c": "x"}}) == (
        b'{"a":{"c":"x","d":[3,2]},"b":1}'
    )
    assert canonical_bytes([]) == b"[]" and canonical_bytes({}) == b"{}"


def test_rfc8785_sorting_vector() -> None:
    """RFC 8785 §3.2.3: properties sort by UTF-16 code units (the emoji, a surrogate pair
    D83D DE00, sorts *before* U+FB33 although its code point is larger)."""
    document = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        b'{"\\r":"Carriage Return","1":"One","\xc2\x80":"Control",'
        b'"\xc3\xb6":"Latin Small Letter O With Diaeresis","\xe2\x82\xac":"Euro Sign",'
        b'"\xf0\x9f\x98\x80":"Emoji: Grinning Face",'
        b'"\xef\xac\xb3":"Hebrew Letter Dalet With Dagesh"}'
    )
    assert canonical_bytes(document) == expected


def test_rfc8785_main_example() -> None:
    """RFC 8785 §3.2.2 / Appendix: numbers, string escapes and literals."""
    document = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    expected = (
        r"""{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"""
        r""""string":"€$\u000f\nA'B\"\\\\\"/"}"""
    ).encode()
    assert canonical_bytes(document) == expected


@pytest.mark.parametrize(
    ("ieee_hex", "text"),
    [
        ("0000000000000000", "0"),
        ("8000000000000000", "0"),
        ("0000000000000001", "5e-324"),
        ("8000000000000001", "-5e-324"),
        ("7fefffffffffffff", "1.7976931348623157e+308"),
        ("4340000000000000", "9007199254740992"),
        ("4430000000000000", "295147905179352830000"),
        ("44b52d02c7e14af5", "9.999999999999997e+22"),
        ("44b52d02c7e14af6", "1e+23"),
        ("3eb0c6f7a0b5ed8d", "0.000001"),
        ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
        ("41b3de4355555555", "333333333.3333333"),
    ],
)
def test_rfc8785_number_vectors(ieee_hex: str, text: str) -> None:
    """RFC 8785 Appendix B: IEEE 754 doubles and their canonical text."""
    (value,) = struct.unpack(">d", bytes.fromhex(ieee_hex))
    assert canonical_bytes([value]) == f"[{text}]".encode()


def test_canonical_unicode_is_raw_utf8_and_controls_escaped() -> None:
    assert canonical_bytes("é\u2028\t\x1f") == b'"\xc3\xa9\xe2\x80\xa8\\t\\u001f"'


def test_non_canonical_signature_encoding_is_rejected(key: SigningKey) -> None:
    """The last base64url character of a 64-byte signature carries 4 unused bits; variants that
    decode to the same bytes must not verify (no malleable signatures)."""
    envelope = sign("query", PAYLOAD, key, now=T0)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    same_bytes = [
        envelope.signature[:-1] + ch
        for ch in alphabet
        if ch != envelope.signature[-1]
        and base64.urlsafe_b64decode(envelope.signature[:-1] + ch + "==")
        == base64.urlsafe_b64decode(envelope.signature + "==")
    ]
    assert len(same_bytes) == 15
    for text in same_bytes:
        forged = envelope.model_copy(update={"signature": text})
        with pytest.raises(BadSignature):
            verify_once(forged, "query", key.public)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 2**53, -(2**60), "\ud800"])
def test_a_payload_without_a_canonical_form_is_a_bad_signature(key: SigningKey, value: Any) -> None:
    """No one can have signed such a payload; verification says so and never raises anything
    but a SignatureError (a task or release holding one is rejected, not a crash)."""
    genuine = sign("task", PAYLOAD, key, now=T0)
    forged = genuine.model_copy(update={"payload": {**PAYLOAD, "rho": value}})
    with pytest.raises(BadSignature, match="canonical"):
        verify_once(forged, "task", key.public)
    with pytest.raises(BadSignature, match="canonical"):
        _verifier(key).verify(forged, "task", now=T0)
