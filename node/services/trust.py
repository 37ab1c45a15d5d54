"""Who may query this node: trusted public keys and a durable replay cache, both in the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from node.storage.db import transaction
from node.storage.models import SeenNonce, TrustedKey
from protocol.signing import key_id_of, public_key_from_text, public_key_to_text


def trust_key(factory: sessionmaker[Session], public_key: Ed25519PublicKey, label: str) -> str:
    key_id = key_id_of(public_key)
    with transaction(factory) as session:
        existing = session.get(TrustedKey, key_id)
        if existing is None:
            session.add(
                TrustedKey(
                    key_id=key_id,
                    public_key=public_key_to_text(public_key),
                    label=label,
                    added_at=datetime.now(UTC),
                )
            )
        else:
            existing.label = label
    return key_id


def untrust_key(factory: sessionmaker[Session], key_id: str) -> bool:
    with transaction(factory) as session:
        result = session.execute(delete(TrustedKey).where(TrustedKey.key_id == key_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]


def trusted_keys(factory: sessionmaker[Session]) -> list[TrustedKey]:
    with factory() as session:
        return list(session.scalars(select(TrustedKey).order_by(TrustedKey.added_at)))


class DatabaseKeyRing:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def public_key(self, key_id: str) -> Ed25519PublicKey | None:
        with self.factory() as session:
            row = session.get(TrustedKey, key_id)
            return None if row is None else public_key_from_text(row.public_key)


class DatabaseNonceStore:
    """Replay cache that survives restarts; forgets nonces older than ``retention``."""

    def __init__(self, factory: sessionmaker[Session], retention: timedelta) -> None:
        self.factory = factory
        self.retention = retention

    def remember(self, key_id: str, nonce: str, created_at: datetime) -> bool:
        try:
            with transaction(self.factory) as session:
                cutoff = datetime.now(UTC) - self.retention
                session.execute(delete(SeenNonce).where(SeenNonce.created_at < cutoff))
                session.add(SeenNonce(key_id=key_id, nonce=nonce, created_at=created_at))
        except IntegrityError:
            return False
        return True
