"""Ed25519 signatures over canonical bytes, with key id, creation time and nonce.

``sign`` wraps a payload in an :class:`Envelope`. :class:`Verifier` checks an envelope and returns
its payload, or raises a :class:`SignatureError`; it never returns False. It rejects unknown keys,
bad signatures, messages older than ``max_age`` (or dated in the future beyond ``max_skew``) and
nonces it has seen before for the same key.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from protocol.canonical import canonical_bytes

SIGNATURE_DOMAIN = b"publieksdata-signature-v1\n"


class SignatureError(Exception):
    """A message failed verification. Subclasses say why; ``code`` is a stable reason code."""

    code = "bad_signature"


class UnknownKey(SignatureError):
    code = "unknown_key"


class BadSignature(SignatureError):
    code = "bad_signature"


class StaleMessage(SignatureError):
    code = "stale_message"


class ReplayedMessage(SignatureError):
    code = "replayed_message"


class WrongMessageType(SignatureError):
    code = "wrong_message_type"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature_bytes(text: str) -> bytes:
    """Decode a signature, accepting only the canonical encoding (no malleable padding bits)."""
    raw = _unb64(text)
    if _b64(raw) != text:
        raise ValueError("non-canonical base64")
    return raw


def raw_public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(key: Ed25519PublicKey) -> str:
    """A short, stable id: the first 16 hex digits of SHA-256 of the raw public key."""
    return hashlib.sha256(raw_public_bytes(key)).hexdigest()[:16]


def fingerprint(key: Ed25519PublicKey) -> str:
    """The full SHA-256 of the raw public key, in groups of four, for comparing out of band."""
    digest = hashlib.sha256(raw_public_bytes(key)).hexdigest().upper()
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def public_key_to_text(key: Ed25519PublicKey) -> str:
    return _b64(raw_public_bytes(key))


def public_key_from_text(text: str) -> Ed25519PublicKey:
    try:
        raw = _unb64(text.strip())
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ValueError("not a base64url-encoded 32-byte Ed25519 public key") from exc


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, data: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the key file does not hold an Ed25519 private key")
        return cls(key)

    def to_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return key_id_of(self.public)


class Envelope(BaseModel):
    """A signed message. ``payload`` is JSON; the signature covers every other field too."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = Field(min_length=1, max_length=64)
    payload: dict[str, Any]
    key_id: str = Field(min_length=16, max_length=16, pattern=r"^[0-9a-f]{16}$")
    created_at: datetime
    nonce: str = Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    signature: str = Field(min_length=80, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")


def _signing_input(
    message_type: str, payload: Mapping[str, Any], key_id: str, created_at: datetime, nonce: str
) -> bytes:
    header = {
        "type": message_type,
        "key_id": key_id,
        "created_at": created_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "nonce": nonce,
        "payload": payload,
    }
    return SIGNATURE_DOMAIN + canonical_bytes(header)


def _verifiable_input(envelope: Envelope) -> bytes:
    """The signed bytes of a received envelope. A payload without a canonical form (an integer
    beyond ±(2**53 − 1), a lone surrogate) cannot have been signed: BadSignature."""
    try:
        return _signing_input(
            envelope.type, envelope.payload, envelope.key_id, envelope.created_at, envelope.nonce
        )
    except ValueError:
        raise BadSignature("the message has no canonical form, so no valid signature") from None


def sign(
    message_type: str,
    payload: Mapping[str, Any],
    key: SigningKey,
    *,
    now: datetime | None = None,
) -> Envelope:
    created_at = (now or datetime.now(UTC)).astimezone(UTC)
    nonce = _b64(secrets.token_bytes(18))
    data = _signing_input(message_type, payload, key.key_id, created_at, nonce)
    return Envelope(
        type=message_type,
        payload=dict(payload),
        key_id=key.key_id,
        created_at=created_at,
        nonce=nonce,
        signature=_b64(key.private.sign(data)),
    )


class KeyRing(Protocol):
    def public_key(self, key_id: str) -> Ed25519PublicKey | None: ...


class NonceStore(Protocol):
    def remember(self, key_id: str, nonce: str, created_at: datetime) -> bool:
        """Record a nonce; return False if it was seen before for this key."""
        ...


@dataclass
class StaticKeyRing:
    keys: Mapping[str, Ed25519PublicKey]

    @classmethod
    def of(cls, *keys: Ed25519PublicKey) -> StaticKeyRing:
        return cls({key_id_of(k): k for k in keys})

    def public_key(self, key_id: str) -> Ed25519PublicKey | None:
        return self.keys.get(key_id)


class MemoryNonceStore:
    """Process-local replay cache that forgets nonces once they are too old to verify anyway."""

    def __init__(self, retention: timedelta = timedelta(minutes=10)) -> None:
        self._seen: dict[tuple[str, str], datetime] = {}
        self._retention = retention
        self._lock = threading.Lock()

    def remember(self, key_id: str, nonce: str, created_at: datetime) -> bool:
        now = datetime.now(UTC)
        with self._lock:
            if len(self._seen) > 10_000:
                cutoff = now - self._retention
                self._seen = {k: t for k, t in self._seen.items() if t >= cutoff}
            if (key_id, nonce) in self._seen:
                return False
            self._seen[(key_id, nonce)] = created_at
            return True


class Verifier:
    def __init__(
        self,
        keys: KeyRing,
        nonces: NonceStore,
        *,
        max_age: timedelta = timedelta(minutes=5),
        max_skew: timedelta = timedelta(seconds=30),
    ) -> None:
        self.keys = keys
        self.nonces = nonces
        self.max_age = max_age
        self.max_skew = max_skew

    def verify(
        self, envelope: Envelope, expected_type: str, *, now: datetime | None = None
    ) -> dict[str, Any]:
        if envelope.type != expected_type:
            raise WrongMessageType(f"expected a {expected_type!r} message, got {envelope.type!r}")
        public = self.keys.public_key(envelope.key_id)
        if public is None:
            raise UnknownKey(f"key {envelope.key_id} is not trusted here")
        data = _verifiable_input(envelope)
        try:
            public.verify(_signature_bytes(envelope.signature), data)
        except (InvalidSignature, ValueError):
            raise BadSignature("the signature does not match the message") from None
        current = (now or datetime.now(UTC)).astimezone(UTC)
        created = envelope.created_at.astimezone(UTC)
        if created < current - self.max_age:
            raise StaleMessage(
                f"the message was signed at {created.isoformat()}, more than "
                f"{int(self.max_age.total_seconds())} s ago"
            )
        if created > current + self.max_skew:
            raise StaleMessage("the message is dated in the future; check the clocks")
        if not self.nonces.remember(envelope.key_id, envelope.nonce, created):
            raise ReplayedMessage("this message was received before")
        return dict(envelope.payload)


def verify_once(envelope: Envelope, expected_type: str, key: Ed25519PublicKey) -> dict[str, Any]:
    """Check only the signature against one key (for stored messages: no freshness, no replay)."""
    if envelope.type != expected_type:
        raise WrongMessageType(f"expected a {expected_type!r} message, got {envelope.type!r}")
    if envelope.key_id != key_id_of(key):
        raise UnknownKey(f"the message was signed by key {envelope.key_id}, not by the given key")
    data = _verifiable_input(envelope)
    try:
        key.verify(_signature_bytes(envelope.signature), data)
    except (InvalidSignature, ValueError):
        raise BadSignature("the signature does not match the message") from None
    return dict(envelope.payload)


def envelope_request_body() -> dict[str, Any]:
    """An OpenAPI requestBody for endpoints that take a signed envelope as their raw body."""
    return {
        "required": True,
        "content": {"application/json": {"schema": Envelope.model_json_schema()}},
    }
