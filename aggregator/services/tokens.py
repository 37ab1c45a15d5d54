"""API tokens for analysts and admins. A token is shown once, when it is made; the database
keeps only its SHA-256 hash (tokens are 256 random bits, so a fast hash is enough)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.storage.models import ApiToken

TOKEN_PREFIX = "pd_"  # noqa: S105 - a prefix, not a secret


class Role(StrEnum):
    ANALYST = "analyst"
    ADMIN = "admin"  # may also do everything an analyst may


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: str
    name: str
    role: Role

    def may(self, role: Role) -> bool:
        return self.role is Role.ADMIN or self.role is role


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def create_token(session: AsyncSession, name: str, role: Role) -> tuple[str, ApiToken]:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        id=secrets.token_hex(8),
        name=name,
        role=role.value,
        token_hash=token_hash(token),
        created_at=datetime.now(UTC),
    )
    session.add(row)
    await session.flush()
    return token, row


async def authenticate(session: AsyncSession, token: str) -> Principal | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = await session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == token_hash(token), ApiToken.revoked_at.is_(None)
        )
    )
    if row is None:
        return None
    return Principal(token_id=row.id, name=row.name, role=Role(row.role))


async def list_tokens(session: AsyncSession) -> list[ApiToken]:
    return list(await session.scalars(select(ApiToken).order_by(ApiToken.created_at)))


async def revoke_token(session: AsyncSession, token_id: str) -> bool:
    result = await session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
