"""Reading and appending sealed releases (table ``release``). Nothing is ever updated or deleted.

Appending takes the chain's head inside the caller's transaction, so two publishers racing for
the same sequence number cannot both succeed: the second insert hits the primary key and its
transaction rolls back, publishing nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.releases.chain import SealedRelease, parse
from aggregator.storage.models import Release


def _sealed(row: Release) -> SealedRelease:
    _, document = parse(row.data)
    return SealedRelease(data=row.data, document=document)


async def chain_index(session: AsyncSession) -> list[tuple[int, str, str]]:
    """(sequence, slug, hash) of every release in chain order, without the documents."""
    rows = await session.execute(
        select(Release.sequence, Release.slug, Release.hash).order_by(Release.sequence)
    )
    return [(sequence, slug, digest) for sequence, slug, digest in rows]


async def stored(session: AsyncSession, hashes: list[str]) -> list[tuple[str, bytes]]:
    """(hash, bytes) of these releases as stored, unparsed and unchecked."""
    rows = await session.execute(select(Release.hash, Release.data).where(Release.hash.in_(hashes)))
    return [(digest, bytes(data)) for digest, data in rows]


async def head(session: AsyncSession) -> tuple[int, str] | None:
    """(sequence, hash) of the newest release, or None before the first."""
    row = (
        await session.execute(
            select(Release.sequence, Release.hash).order_by(Release.sequence.desc()).limit(1)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def latest_of(session: AsyncSession, release_id: str) -> SealedRelease | None:
    row = await session.scalar(
        select(Release)
        .where(Release.release_id == release_id)
        .order_by(Release.version.desc())
        .limit(1)
    )
    return None if row is None else _sealed(row)


async def append(session: AsyncSession, sealed: SealedRelease, now: datetime) -> None:
    document = sealed.document
    session.add(
        Release(
            sequence=document.sequence,
            slug=document.slug,
            release_id=document.release_id,
            version=document.version,
            hash=sealed.hash,
            published_at=now,
            data=sealed.data,
        )
    )
    await session.flush()
