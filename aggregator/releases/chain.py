"""Sealing releases and checking the release chain.

A sealed release is the aggregator's signed envelope (type ``RELEASE``) around the release
document, stored and served byte for byte as JSON. Its hash is SHA-256 over those exact bytes;
the next release carries it as ``previous_hash``. :func:`verify_chain` checks, for a list of
sealed releases: each signature against the aggregator's public key, that the bytes are the
canonical form (so a reformatted or re-encoded file is caught, not only an edited figure),
that sequence numbers run 1, 2, 3, … without a gap, that each release names its predecessor's
hash, and that a correction names a release earlier in the chain.

Verification never returns False: it collects every problem it finds, with the release and the
reason, so that ``publieksdata verify-release`` can say exactly what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from aggregator.releases.document import RELEASE, ReleaseDocument
from protocol.canonical import canonical_bytes
from protocol.signing import Envelope, SignatureError, SigningKey, key_id_of, sign, verify_once


def release_hash(sealed: bytes) -> str:
    return hashlib.sha256(sealed).hexdigest()


@dataclass(frozen=True)
class SealedRelease:
    """A release as published: the signed bytes, their hash and the parsed document."""

    data: bytes  # canonical JSON of the signed envelope; exactly what is served and hashed
    document: ReleaseDocument

    @property
    def hash(self) -> str:
        return release_hash(self.data)

    @property
    def slug(self) -> str:
        return self.document.slug


class UnverifiableRelease(ValueError):
    """Sealing would produce a release that ``verify_chain`` could not check."""


def seal(document: ReleaseDocument, key: SigningKey) -> SealedRelease:
    """Sign the document and return its canonical bytes, checked as a verifier will check them:
    a release that could be signed but not verified (e.g. a number that has no exact canonical
    JSON form once parsed back) is refused here, before anything is published."""
    try:
        envelope = sign(RELEASE, document.model_dump(mode="json"), key)
        data = canonical_bytes(envelope.model_dump(mode="json"))
    except ValueError as exc:
        raise UnverifiableRelease(f"the release cannot be signed: {_first_error(exc)}") from None
    problem = _unverifiable(data, {key.key_id: key.public})
    if problem is not None:
        raise UnverifiableRelease(f"the release could not be verified: {problem}")
    return SealedRelease(data=data, document=document)


def _canonical_problem(data: bytes) -> str | None:
    """Why ``data`` is not in canonical form, or None."""
    try:
        if canonical_bytes(json.loads(data)) == data:
            return None
    except ValueError as exc:  # e.g. an integer beyond 2**53 − 1 (rfc8785.IntegerDomainError)
        return f"it holds a value that has no canonical JSON form ({_first_error(exc)})"
    return "the file is not in its published (canonical) form: it was edited"


def stored_problem(
    data: bytes, stored_hash: str, keyring: Mapping[str, Ed25519PublicKey]
) -> str | None:
    """Why a release as stored fails verification on its own, or None: its bytes must hash to
    the hash it was published with, parse, be canonical and carry a valid signature by one of
    the aggregator's keys. (The links between releases are ``verify_chain``'s job.)"""
    if release_hash(data) != stored_hash:
        return "its bytes do not match the hash it was published with"
    return _unverifiable(data, keyring)


def _unverifiable(data: bytes, keyring: Mapping[str, Ed25519PublicKey]) -> str | None:
    """Why a release fails verification on its own (form and signature, not its links)."""
    try:
        envelope, _ = parse(data)
    except ReleaseFormatError as exc:
        return str(exc)
    problems = _own_problems(data, envelope, keyring)
    return "; ".join(problems) if problems else None


def _own_problems(
    data: bytes, envelope: Envelope, keyring: Mapping[str, Ed25519PublicKey]
) -> list[str]:
    """What is wrong with one parsed release on its own: its signer, signature and form."""
    problems = []
    public_key = keyring.get(envelope.key_id)
    if public_key is None:
        problems.append(
            f"it is signed by key {envelope.key_id}, which is not one of the aggregator's keys "
            "given to this check"
        )
    else:
        try:
            verify_once(envelope, RELEASE, public_key)
        except SignatureError:
            problems.append(
                "the signature does not match: the release was changed after signing, or was "
                "not signed by this aggregator"
            )
    form = _canonical_problem(data)
    if form is not None:
        problems.append(form)
    return problems


class ReleaseFormatError(ValueError):
    """The bytes are not a sealed release at all."""


def parse(data: bytes) -> tuple[Envelope, ReleaseDocument]:
    """Parse sealed bytes without checking the signature (see :func:`verify_chain`)."""
    try:
        raw: Any = json.loads(data)
        envelope = Envelope.model_validate(raw)
        if envelope.type != RELEASE:
            raise ReleaseFormatError(f"a signed {envelope.type!r} message, not a release")
        return envelope, ReleaseDocument.model_validate(envelope.payload)
    except (ValueError, ValidationError) as exc:
        if isinstance(exc, ReleaseFormatError):
            raise
        raise ReleaseFormatError(f"not a publieksdata release: {_first_error(exc)}") from None


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "document"
        return f"{where}: {error['msg']}"
    return str(exc).splitlines()[0][:200]


@dataclass
class Problem:
    where: str  # "sequence 3 (sector-2025-v1)" or "chain"
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class ChainReport:
    checked: int = 0
    head: str | None = None  # the hash of the last release checked
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.checked > 0


def _label(index: int, document: ReleaseDocument | None) -> str:
    if document is None:
        return f"release #{index + 1} in the list"
    return f"sequence {document.sequence} ({document.slug})"


def verify_chain(
    releases: list[bytes],
    keys: Ed25519PublicKey | Mapping[str, Ed25519PublicKey],
) -> ChainReport:
    """Check sealed releases, given in chain order starting with the first (sequence 1), against
    the aggregator's key, or its keys by key id (its current key and those it retired)."""
    keyring = {key_id_of(keys): keys} if isinstance(keys, Ed25519PublicKey) else dict(keys)
    report = ChainReport()
    previous: ReleaseDocument | None = None
    previous_hash: str | None = None
    seen: dict[str, int] = {}  # hash → sequence
    for index, data in enumerate(releases):
        report.checked += 1
        try:
            envelope, document = parse(data)
        except ReleaseFormatError as exc:
            report.problems.append(Problem(_label(index, None), str(exc)))
            previous, previous_hash = None, release_hash(data)
            continue
        where = _label(index, document)
        report.problems.extend(
            Problem(where, why) for why in _own_problems(data, envelope, keyring)
        )
        expected_sequence = 1 if index == 0 else (previous.sequence + 1 if previous else None)
        if expected_sequence is not None and document.sequence != expected_sequence:
            if document.sequence > expected_sequence:
                missing = document.sequence - expected_sequence
                report.problems.append(
                    Problem(
                        where,
                        f"{missing} release(s) missing before it: expected sequence "
                        f"{expected_sequence}, found {document.sequence}",
                    )
                )
            else:
                report.problems.append(
                    Problem(where, f"out of order: expected sequence {expected_sequence}")
                )
        if index == 0:
            if document.previous_hash is not None:
                report.problems.append(
                    Problem(where, "the first release must not point to a previous one, but does")
                )
        elif document.previous_hash != previous_hash:
            report.problems.append(
                Problem(
                    where,
                    "its link to the previous release does not match: the previous release was "
                    "changed, removed or replaced",
                )
            )
        if document.corrects is not None and document.corrects not in seen:
            report.problems.append(
                Problem(where, "it corrects a release that is not earlier in this chain")
            )
        current_hash = release_hash(data)
        seen[current_hash] = document.sequence
        previous, previous_hash = document, current_hash
        report.head = current_hash
    if not releases:
        report.problems.append(Problem("chain", "there are no releases to check"))
    return report
