"""The sector pseudonym: what goes into the OPRF, what a node keeps, and the key holder wire.

A person's sector pseudonym for a year is the threshold OPRF (``protocol.oprf``) of

    "publieksdata-sector-v1" 0x00 || I2OSP(year, 2) || I2OSP(len(kind), 1) || kind || identifier

where ``identifier`` is the normalised identifier (UTF-8) and ``kind`` names what it is
("email" by default). The year and kind are inside the PRF input, with fixed-length framing, so
that a person's pseudonyms of two years are outputs of a PRF on two different inputs: unlinkable
to anyone without the key. (RFC 9497's POPRF mode puts such a tweak in the key instead, as
1/(k + H(info)); an inverse of a Shamir-shared key does not split into holders' shares, so that
mode cannot be thresholded without a multi-party inversion.)

A node keeps per person and year only :func:`stored_value`: the first 16 bytes of the 64-byte
OPRF output, as hex. See docs/explanation/sector-pseudonym.md for why that is the least the reach
round needs.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

DOMAIN = b"publieksdata-sector-v1\x00"
EMAIL = "email"
STORED_BYTES = 16
MIN_YEAR, MAX_YEAR = 1900, 2200
# One request holds at most this many blinded elements; the node sends larger imports in
# several requests.
MAX_BATCH = 5_000
EVALUATE = "oprf_evaluate"  # the signed envelope type of an evaluation request
EVALUATED = "oprf_evaluated"  # the key holder's signed answer
KEYHOLDER_JOIN = "keyholder_join"

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
_SEPARATORS = re.compile(r"[\s\-._/]+")


def normalise(raw: str, kind: str = EMAIL) -> str | None:
    """The identifier as every institution writes it, or None when there is none.

    Every kind: Unicode NFKC, surrounding white space trimmed, lower-cased (casefold). An e-mail
    address also loses a leading ``mailto:`` and must then look like ``local@domain.tld`` with no
    white space; nothing else is rewritten (no dots or ``+tags`` removed: mail providers differ on
    whether those are the same mailbox). Another kind (a sector card number, say) also loses
    white space, hyphens, dots, underscores and slashes inside it.
    """
    text = unicodedata.normalize("NFKC", raw).strip().casefold()
    if not text:
        return None
    if kind == EMAIL:
        if text.startswith("mailto:"):
            text = text[len("mailto:") :].strip()
        return text if _EMAIL.fullmatch(text) else None
    text = _SEPARATORS.sub("", text)
    return text or None


def oprf_input(identifier: str, year: int, kind: str = EMAIL) -> bytes:
    """The OPRF input of a normalised identifier in a year (see the module docstring)."""
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"year {year} is outside {MIN_YEAR}..{MAX_YEAR}")
    if not _KIND.fullmatch(kind):
        raise ValueError("an identifier kind is a short lower-case name")
    kind_bytes = kind.encode("ascii")
    return (
        DOMAIN
        + year.to_bytes(2, "big")
        + len(kind_bytes).to_bytes(1, "big")
        + kind_bytes
        + identifier.encode("utf-8")
    )


def stored_value(output: bytes) -> str:
    """What a node stores of an OPRF output: its first 16 bytes, as 32 hex digits."""
    return output[:STORED_BYTES].hex()


def key_set_id(public_key_hex: str) -> str:
    """The id of a split key: 16 hex digits of a hash of its public key k·G."""
    digest = hashlib.sha256(b"publieksdata-key-set-v1\x00" + bytes.fromhex(public_key_hex))
    return digest.hexdigest()[:16]


# -- the key holder's wire -----------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


KeySetId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
Element = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class KeyholderJoinRequest(_Model):
    """Signed by the node's own key, which proves it holds the key it enrols."""

    invite: Annotated[str, Field(min_length=10, max_length=40)]
    institution: Annotated[str, Field(min_length=1, max_length=120)]
    public_key: Annotated[str, Field(min_length=40, max_length=64)]


class KeyholderInfo(_Model):
    """What a key holder tells a node when it joins, and on GET /v1/info."""

    name: str
    key_set: KeySetId  # the id of the split key: every holder of one key set has the same
    index: Annotated[int, Field(ge=1, le=255)]  # this holder's Shamir x-coordinate
    threshold: Annotated[int, Field(ge=1, le=255)]
    holders: Annotated[int, Field(ge=1, le=255)]
    public_key: str  # the holder's Ed25519 key (base64url), for its fingerprint
    key_public: Element  # the split key's public key k·G, as recorded at the ceremony
    public_share: Element  # this holder's public share k_i·G, as recorded at the ceremony
    max_batch: int


class KeyholderJoinResponse(_Model):
    node_id: str
    institution: str
    keyholder: KeyholderInfo


class EvaluateRequest(_Model):
    """The payload of an ``oprf_evaluate`` envelope: blinded elements, hex-encoded. ``year``
    is what the node says the batch is for; the holder cannot check it (the elements are
    blinded) and records it in its audit log."""

    key_set: KeySetId
    year: Annotated[int, Field(ge=MIN_YEAR, le=MAX_YEAR)]
    elements: Annotated[tuple[Element, ...], Field(min_length=1, max_length=MAX_BATCH)]


class EvaluateResponse(_Model):
    """The payload of the holder's ``oprf_evaluated`` envelope: k_i·B for every element, in the
    request's order, bound to the request by its nonce."""

    key_set: KeySetId
    index: Annotated[int, Field(ge=1, le=255)]
    request: Annotated[str, Field(min_length=16, max_length=64)]  # the request envelope's nonce
    elements: tuple[Element, ...]
