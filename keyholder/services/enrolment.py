"""Enrolment: one-time invite codes, redeemed by a node that proves it holds its key. The same
rules as the aggregator's (protocol: Crockford codes, only a hash stored, one use, expiry, and
wrong codes counted per source address towards a lock-out)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from keyholder.storage.models import EnrolFailure, Invite, Node
from protocol.sector import KeyholderJoinRequest
from protocol.signing import key_id_of, public_key_from_text, public_key_to_text

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base 32
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})


class InviteRejected(Exception):
    """The code is unknown, used or expired (one reason for all three: no oracle)."""


class KeyInUse(Exception):
    """The key is enrolled for another node already."""


def new_invite_code() -> str:
    chars = "".join(secrets.choice(ALPHABET) for _ in range(20))
    return "-".join(chars[i : i + 5] for i in range(0, 20, 5))


def code_hash(code: str) -> str:
    normal = code.strip().upper().translate(_READ_AS)
    return hashlib.sha256(normal.encode("ascii", "replace")).hexdigest()


def create_invite(
    session: Session, institution: str, now: datetime, valid_for: timedelta
) -> tuple[str, Invite]:
    code = new_invite_code()
    invite = Invite(
        id=secrets.token_hex(8),
        code_hash=code_hash(code),
        institution=institution,
        created_at=now,
        expires_at=now + valid_for,
    )
    session.add(invite)
    session.flush()
    return code, invite


def locked(
    session: Session, source: str, max_failures: int, period: timedelta, now: datetime
) -> bool:
    count = session.scalar(
        select(func.count())
        .select_from(EnrolFailure)
        .where(EnrolFailure.source == source[:64], EnrolFailure.at >= now - period)
    )
    return (count or 0) >= max_failures


def record_failure(session: Session, source: str, now: datetime) -> None:
    session.add(EnrolFailure(source=source[:64], at=now))
    session.execute(delete(EnrolFailure).where(EnrolFailure.at < now - timedelta(days=7)))


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def redeem(session: Session, join: KeyholderJoinRequest, now: datetime) -> Node:
    """Use the invite and enrol the node. Raises InviteRejected or KeyInUse."""
    invite = session.scalar(select(Invite).where(Invite.code_hash == code_hash(join.invite)))
    if invite is None or invite.used_at is not None or _aware(invite.expires_at) <= now:
        raise InviteRejected
    public = public_key_from_text(join.public_key)
    key_id = key_id_of(public)
    if session.scalar(select(Node).where(Node.key_id == key_id)) is not None:
        raise KeyInUse
    invite.used_at = now
    node = Node(
        id="n" + secrets.token_hex(5),
        institution=invite.institution,
        key_id=key_id,
        public_key=public_key_to_text(public),
        joined_at=now,
    )
    session.add(node)
    session.flush()
    return node
