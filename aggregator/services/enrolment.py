"""Enrolment: one-time invite codes, redeemed by a node that proves it holds its key.

An invite code is 100 random bits, written as four groups of five Crockford base-32 characters
(no I, L, O or U, so it survives being read out over the phone). The database keeps only its
SHA-256 hash. A code works once and expires. Wrong codes are counted per source address and in
total; past either limit, enrolment is locked for a while, which makes guessing hopeless even
before the 2^100 search space is considered. A used code is refused but not counted: whoever
sends it knew a real code, so it is no guess (typically a node retrying a join whose answer it
never received).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.errors import AggregatorError, ErrorCode
from aggregator.services.writer import Writer
from aggregator.storage.models import EnrolFailure, Invite, Node
from protocol.messages import JoinRequest
from protocol.signing import key_id_of, public_key_from_text, public_key_to_text

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base 32
GROUPS, GROUP_LEN = 4, 5
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})


def new_invite_code() -> str:
    chars = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_LEN))
    return "-".join(chars[i : i + GROUP_LEN] for i in range(0, len(chars), GROUP_LEN))


def normalise_code(code: str) -> str:
    return code.strip().upper().translate(_READ_AS)


def code_hash(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode("ascii", "replace")).hexdigest()


async def create_invite(
    session: AsyncSession,
    institution: str,
    created_by: str,
    valid_for: timedelta,
    node_id: str | None = None,
) -> tuple[str, Invite]:
    code = new_invite_code()
    now = datetime.now(UTC)
    invite = Invite(
        id=secrets.token_hex(8),
        code_hash=code_hash(code),
        institution=institution,
        node_id=node_id,
        created_by=created_by,
        created_at=now,
        expires_at=now + valid_for,
    )
    session.add(invite)
    await session.flush()
    return code, invite


@dataclass(frozen=True, slots=True)
class Lockout:
    max_failures: int
    max_failures_total: int
    period: timedelta


async def locked_for(
    session: AsyncSession, source: str, policy: Lockout, now: datetime
) -> timedelta | None:
    """How long enrolment stays locked for ``source``, or None when it is open."""
    since = now - policy.period
    mine = await session.scalar(
        select(func.count())
        .select_from(EnrolFailure)
        .where(EnrolFailure.source == source, EnrolFailure.at >= since)
    )
    total = await session.scalar(
        select(func.count()).select_from(EnrolFailure).where(EnrolFailure.at >= since)
    )
    if (mine or 0) >= policy.max_failures or (total or 0) >= policy.max_failures_total:
        newest = await session.scalar(
            select(func.max(EnrolFailure.at)).where(EnrolFailure.at >= since)
        )
        if newest is None:  # pragma: no cover - a count above zero has a newest row
            return policy.period
        if newest.tzinfo is None:  # func.max bypasses the column type on SQLite
            newest = datetime.fromisoformat(str(newest)).replace(tzinfo=UTC)
        return max(timedelta(seconds=1), newest + policy.period - now)
    return None


class InviteRejected(Exception):
    """The code is unknown, used or expired (one reason for all three: no oracle)."""


class InviteUsed(InviteRejected):
    """The code is a real one, already used: a node retrying its join, not a guess. It is
    refused like any other, but does not count towards the lock-out."""


class KeyInUse(Exception):
    """The key is enrolled for another node already."""


async def record_failure(session: AsyncSession, source: str, now: datetime) -> None:
    session.add(EnrolFailure(source=source[:64], at=now))
    await session.execute(delete(EnrolFailure).where(EnrolFailure.at < now - timedelta(days=7)))


async def redeem(session: AsyncSession, join: JoinRequest, now: datetime) -> Node:
    """Use the invite: enrol a new node, or give an existing node (a re-key invite) its new key.
    Raises InviteRejected or KeyInUse; the caller records failures."""
    invite = await session.scalar(
        select(Invite).where(Invite.code_hash == code_hash(join.invite)).with_for_update()
    )
    if invite is not None and invite.used_at is not None:
        raise InviteUsed
    if invite is None or invite.expires_at <= now:
        raise InviteRejected
    public = public_key_from_text(join.public_key)
    key_id = key_id_of(public)
    holder = await session.scalar(select(Node).where(Node.key_id == key_id))
    if holder is not None and holder.id != invite.node_id:
        raise KeyInUse
    invite.used_at = now
    if invite.node_id is not None:
        node = await session.get(Node, invite.node_id)
        if node is None or node.status != "active":
            raise InviteRejected
        node.key_id = key_id
        node.public_key = public_key_to_text(public)
        node.report = None
        node.report_at = None
        return node
    node = Node(
        id="n" + secrets.token_hex(5),
        institution=invite.institution,
        key_id=key_id,
        public_key=public_key_to_text(public),
        status="active",
        joined_at=now,
    )
    session.add(node)
    await session.flush()
    return node


async def refuse_if_locked(
    factory: async_sessionmaker[AsyncSession], source: str, policy: Lockout, now: datetime
) -> None:
    async with factory() as session:
        locked = await locked_for(session, source, policy, now)
    if locked is not None:
        raise AggregatorError(
            ErrorCode.ENROL_LOCKED, retry_after_seconds=int(locked.total_seconds()) + 1
        )


async def join(writer: Writer, join: JoinRequest, source: str, now: datetime) -> Node:
    """Enrol the key of ``join`` with its invite code, or raise why not. A wrong code counts
    against ``source`` (a used one does not: it is no guess)."""

    async def store(session: AsyncSession) -> Node | str:
        try:
            return await redeem(session, join, now)
        except InviteUsed:
            return "used"
        except InviteRejected:
            return "rejected"
        except KeyInUse:
            return "key_in_use"

    node = await writer.run(store)
    if node == "rejected":

        async def fail(session: AsyncSession) -> None:
            await record_failure(session, source, now)

        await writer.run(fail)
        raise AggregatorError(ErrorCode.INVITE_INVALID)
    if node == "used":  # the same answer as a wrong code, but not counted: no guess
        raise AggregatorError(ErrorCode.INVITE_INVALID)
    if node == "key_in_use":
        raise AggregatorError(ErrorCode.KEY_ALREADY_ENROLLED)
    assert isinstance(node, Node)
    return node
