"""The node's two secrets: the HMAC pseudonymisation secret and the Ed25519 signing key.

Both live as files in the node's home directory, readable only by the owner. They never leave the
node, are never logged and never appear in a response.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import unicodedata
from pathlib import Path

from protocol.signing import SigningKey

SECRET_BYTES = 32


class IdentityError(RuntimeError):
    """A key file is missing or unreadable."""


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def create_secret(path: Path) -> None:
    _write_private(path, secrets.token_hex(SECRET_BYTES).encode("ascii") + b"\n")


def load_secret(path: Path) -> bytes:
    try:
        text = path.read_text("ascii").strip()
        secret = bytes.fromhex(text)
    except FileNotFoundError:
        raise IdentityError(
            f"the node secret {path} is missing; run 'publieksdata node init' first"
        ) from None
    except ValueError:
        raise IdentityError(f"the node secret {path} is damaged") from None
    if len(secret) < SECRET_BYTES:
        raise IdentityError(f"the node secret {path} is too short")
    return secret


def create_signing_key(path: Path) -> SigningKey:
    key = SigningKey.generate()
    _write_private(path, key.to_pem())
    return key


def load_signing_key(path: Path) -> SigningKey:
    try:
        return SigningKey.from_pem(path.read_bytes())
    except FileNotFoundError:
        raise IdentityError(
            f"the signing key {path} is missing; run 'publieksdata node init' first"
        ) from None
    except ValueError:
        raise IdentityError(f"the signing key {path} is damaged") from None


def normalise_identifier(identifier: str) -> str:
    """Normalise a customer identifier (customer number or e-mail address) before hashing.

    Unicode NFKC, surrounding white space removed, inner white space removed, case folded. The
    same rule runs at import and for GDPR requests, so a person who gives their e-mail address
    in another case still finds their data.
    """
    text = unicodedata.normalize("NFKC", identifier)
    return "".join(text.split()).casefold()


def pseudonym(secret: bytes, identifier: str) -> str:
    """HMAC-SHA256(node secret, normalised identifier), hex. Stable for the node's lifetime."""
    message = normalise_identifier(identifier).encode("utf-8")
    return hmac.new(secret, b"person\x00" + message, hashlib.sha256).hexdigest()


def sample_key(ticket_ref_hex: str) -> int:
    """The row's sampling key for contribution bounding: the top 31 bits of its ticket_ref."""
    return int(ticket_ref_hex[:8], 16) >> 1


def ticket_ref(secret: bytes, source: str, ticket_id: str) -> str:
    """A keyed reference for a ticket id, unique per source (128 bits, hex)."""
    message = f"{source}\x00{ticket_id.strip()}".encode()
    return hmac.new(secret, b"ticket\x00" + message, hashlib.sha256).hexdigest()[:32]
