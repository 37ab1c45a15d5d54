"""Evaluating one batch: the rate limit, the audit log and the OPRF step itself.

The limit is per node and per window of protocol time (the injected clock): at most
``limit`` elements in ``window``. A batch that would cross it is refused whole, with the time
until the window ends. Every batch, evaluated or refused, leaves one audit row (node, year,
count, time, outcome); no element is ever stored or logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from keyholder.storage.models import AuditEntry, Node, Usage
from protocol import oprf
from protocol.signing import public_key_from_text

EVALUATED = "evaluated"
RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class Limit:
    elements: int
    window: timedelta


class RateLimited(Exception):
    """Over the limit. ``audit`` is the refusal's audit row, for the caller to store in a
    transaction of its own (this one rolls back)."""

    def __init__(self, retry_after: timedelta, audit: AuditEntry) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after
        self.audit = audit


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def admit(
    session: Session, node_id: str, year: int, count: int, limit: Limit, now: datetime
) -> None:
    """Count ``count`` elements against the node's window and audit the batch, or raise
    :class:`RateLimited`."""
    usage = session.get(Usage, node_id, with_for_update=True)
    if usage is None:
        usage = Usage(node_id=node_id, window_start=now, count=0)
        session.add(usage)
    elif _aware(usage.window_start) + limit.window <= now:
        usage.window_start, usage.count = now, 0
    if usage.count + count > limit.elements:
        refusal = AuditEntry(at=now, node_id=node_id, year=year, count=count, outcome=RATE_LIMITED)
        raise RateLimited(_aware(usage.window_start) + limit.window - now, refusal)
    usage.count += count
    session.add(AuditEntry(at=now, node_id=node_id, year=year, count=count, outcome=EVALUATED))


def check(elements: Sequence[str]) -> list[bytes]:
    """The elements as bytes; :class:`protocol.oprf.OprfError` if any is not a valid element."""
    return [oprf.check_element(bytes.fromhex(e)) for e in elements]


def evaluate(share: int, elements: Sequence[bytes]) -> list[str]:
    """k_i·B for every (checked) blinded element B, as hex."""
    return [oprf.evaluate(share, e).hex() for e in elements]


class NodeKeys:
    """The verifier's key ring: the enrolled (not removed) nodes, read from the database."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def node(self, key_id: str) -> Node | None:
        with self.factory() as session:
            return session.scalar(
                select(Node).where(Node.key_id == key_id, Node.removed_at.is_(None))
            )

    def public_key(self, key_id: str) -> Ed25519PublicKey | None:
        node = self.node(key_id)
        return None if node is None else public_key_from_text(node.public_key)
