"""The operator's audit log: every answer, refusal, approval, policy change, import, GDPR request,
retention run, key rotation and login failure, in order, hash-chained.

Each event is canonical JSON (RFC 8785) in ``audit_event.body``; its hash is
SHA-256(previous hash ‖ body), starting from 64 zeros. Changing, inserting or deleting an event
changes every hash after it, so ``verify`` (and ``publieksdata node audit verify``) finds the
first event that no longer fits. The chain head is also kept in ``audit_head``, which appends
lock, so two transactions never both extend the same event. An answer's event is written in the
same transaction as its ledger debit, before the answer leaves the node.

What the chain cannot show on its own: someone with write access to the database could rewrite
every event after a change and the head with it. Keep the head hash that ``verify`` prints
somewhere else (it is also on the admin pages and in the CSV export) to catch that.

No personal data is logged: GDPR events hold the action and counts, never the identifier or
its pseudonym; login failures hold only the time.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from node.storage.models import AuditEvent, AuditHead, LedgerEntry

GENESIS = "0" * 64

# Event kinds.
ANSWER = "answer"
REFUSAL = "refusal"
REJECTED_TASK = "rejected_task"
APPROVAL_WAITING = "approval_waiting"
APPROVED = "approved"
DECLINED = "declined"
APPROVAL_EXPIRED = "approval_expired"
POLICY_CHANGE = "policy_change"
TRUST_REVOKED = "trust_revoked"
KEY_ROTATION = "key_rotation"
IMPORT = "import"
GDPR_ACCESS = "gdpr_access"
GDPR_ERASURE = "gdpr_erasure"
RETENTION = "retention"
LOGIN_FAILED = "login_failed"
LOCKED_OUT = "locked_out"
PASSWORD_SET = "password_set"  # noqa: S105 - an event kind, not a password
BUDGET_RESTORED = "budget_restored"
BACKUP_RESTORED = "backup_restored"

KINDS = (
    ANSWER,
    REFUSAL,
    REJECTED_TASK,
    APPROVAL_WAITING,
    APPROVED,
    DECLINED,
    APPROVAL_EXPIRED,
    POLICY_CHANGE,
    TRUST_REVOKED,
    KEY_ROTATION,
    IMPORT,
    GDPR_ACCESS,
    GDPR_ERASURE,
    RETENTION,
    LOGIN_FAILED,
    LOCKED_OUT,
    PASSWORD_SET,
    BUDGET_RESTORED,
    BACKUP_RESTORED,
)


def chain_hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + body.encode("utf-8")).hexdigest()


def append(session: Session, kind: str, at: datetime | None = None, **fields: Any) -> AuditEvent:
    """Append one event inside the caller's transaction. ``fields`` must be JSON values."""
    if kind not in KINDS:
        raise ValueError(f"unknown audit event kind {kind!r}")
    at = (at or datetime.now(UTC)).astimezone(UTC)
    head = session.scalar(select(AuditHead).where(AuditHead.id == 1).with_for_update())
    if head is None:  # the migration creates it; a database made otherwise gets it here
        _create_head(session)
        head = session.scalar(select(AuditHead).where(AuditHead.id == 1).with_for_update())
        assert head is not None
    seq = head.seq + 1
    document = {"seq": seq, "at": at.isoformat(), "kind": kind, **fields}
    body = rfc8785.dumps(document).decode("utf-8")
    digest = chain_hash(head.hash, body)
    event = AuditEvent(seq=seq, at=at, kind=kind, body=body, prev_hash=head.hash, hash=digest)
    session.add(event)
    head.seq = seq
    head.hash = digest
    session.flush()
    return event


def _create_head(session: Session) -> None:
    """Insert the head row unless a concurrent transaction did (then wait for its lock)."""
    values = {"id": 1, "seq": 0, "hash": GENESIS}
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(AuditHead).values(**values).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(AuditHead).values(**values).on_conflict_do_nothing())


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    at: datetime
    kind: str
    data: dict[str, Any]
    hash: str


def entries(
    session: Session, *, kind: str | None = None, limit: int = 100, before: int | None = None
) -> list[Entry]:
    """The newest events first."""
    query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
    if kind:
        query = query.where(AuditEvent.kind == kind)
    if before is not None:
        query = query.where(AuditEvent.seq < before)
    return [_entry(e) for e in session.scalars(query)]


def _entry(event: AuditEvent) -> Entry:
    data = json.loads(event.body)
    return Entry(
        seq=event.seq,
        at=datetime.fromisoformat(data["at"]),
        kind=event.kind,
        data=data,
        hash=event.hash,
    )


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def head(session: Session) -> tuple[int, str]:
    row = session.get(AuditHead, 1)
    return (row.seq, row.hash) if row is not None else (0, GENESIS)


@dataclass(frozen=True, slots=True)
class Verification:
    events: int
    head_hash: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _all(session: Session, batch: int = 2000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.seq > last)
                .order_by(AuditEvent.seq)
                .limit(batch)
            )
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify(session: Session) -> Verification:
    """Recompute the chain; also check that every ledger answer has its answer event with the
    same answer hash (an answer whose event was removed is a problem too)."""
    problems: list[str] = []
    prev = GENESIS
    expected = 1
    answered: dict[str, str] = {}
    events = 0
    for event in _all(session):
        events += 1
        if event.seq != expected:
            problems.append(f"event {expected} is missing (the next one is {event.seq})")
            expected = event.seq
        if event.prev_hash != prev:
            problems.append(f"event {event.seq} does not follow the event before it")
        if chain_hash(event.prev_hash, event.body) != event.hash:
            problems.append(f"event {event.seq} was changed after it was written")
        try:
            data = json.loads(event.body)
        except ValueError:
            problems.append(f"event {event.seq} is not readable")
            data = {}
        if data.get("seq") != event.seq or data.get("kind") != event.kind:
            problems.append(f"event {event.seq}: its columns disagree with its content")
        if event.kind == ANSWER and isinstance(data.get("query_id"), str):
            answered[data["query_id"]] = str(data.get("answer_sha256"))
        prev = event.hash
        expected += 1
    seq, head_hash = head(session)
    if events and (seq != expected - 1 or head_hash != prev):
        problems.append("the chain's recorded head does not match its last event")
    for query_id, digest in session.execute(
        select(LedgerEntry.query_id, LedgerEntry.answer_sha256)
    ):
        logged = answered.get(query_id)
        if logged is None:
            problems.append(f"the answer to query {query_id} is not in the audit log")
        elif logged != digest:
            problems.append(f"the answer to query {query_id} differs from what the log recorded")
    return Verification(events=events, head_hash=prev, problems=tuple(problems))


CSV_COLUMNS = (
    "seq",
    "at",
    "kind",
    "analyst",
    "via",
    "query_id",
    "query",
    "rho",
    "epsilon",
    "delta",
    "details",
    "hash",
)


def export_csv(session: Session, describe: Any = None) -> Iterable[str]:
    """The whole log as CSV text chunks, oldest first. ``describe(data)`` gives the plain-language
    query column (the admin pages pass their own, in the reader's language)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    for event in _all(session):
        buffer.seek(0)
        buffer.truncate()
        data = json.loads(event.body)
        shown = {
            k: v
            for k, v in data.items()
            if k not in {"seq", "at", "kind", "analyst", "via", "query_id", "query", "rho"}
            and k not in {"epsilon", "delta"}
        }
        writer.writerow(
            (
                event.seq,
                data["at"],
                event.kind,
                data.get("analyst", ""),
                data.get("via", ""),
                data.get("query_id", ""),
                describe(data) if describe is not None and data.get("query") else "",
                data.get("rho", ""),
                data.get("epsilon", ""),
                data.get("delta", ""),
                json.dumps(shown, ensure_ascii=False, sort_keys=True) if shown else "",
                event.hash,
            )
        )
        yield buffer.getvalue()


def record_refusal(
    factory: Any,
    *,
    query_id: str,
    reason: str,
    message: str,
    analyst: str,
    via: str,
    spec: Any = None,
    phase: str | None = None,
) -> None:
    """Log a refusal in its own transaction (nothing was released, so nothing else commits)."""
    from node.services.ledger import query_summary
    from node.storage.db import transaction

    with transaction(factory) as session:
        append(
            session,
            REFUSAL,
            query_id=query_id,
            analyst=analyst,
            via=via,
            reason=reason,
            message=message,
            phase=phase,
            query=query_summary(spec) if spec is not None else None,
        )
