"""Dependencies for the aggregator's routes, as Annotated aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.errors import AggregatorError, ErrorCode
from aggregator.rounds.service import Rounds
from aggregator.services.notify import Notifier
from aggregator.services.registry import NodeKeys
from aggregator.services.tokens import Principal, Role, authenticate
from aggregator.services.writer import Writer
from aggregator.settings import AggregatorSettings
from protocol.signing import Envelope, MemoryNonceStore, SigningKey, Verifier


@dataclass
class AggregatorState:
    settings: AggregatorSettings
    factory: async_sessionmaker[AsyncSession]
    writer: Writer
    notifier: Notifier
    key: SigningKey
    node_keys: NodeKeys
    poll_verifier: Verifier
    join_nonces: MemoryNonceStore
    rounds: Rounds
    rotations: dict[str, Envelope]  # key-rotation messages by the old key id
    retired_keys: list[SigningKey]  # keys it signed with before a rotation (releases)


def _state(request: Request) -> AggregatorState:
    state: AggregatorState = request.app.state.aggregator
    return state


StateDep = Annotated[AggregatorState, Depends(_state)]

_bearer = HTTPBearer(auto_error=False, description="An analyst or admin API token.")


async def _principal(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AggregatorError(ErrorCode.NOT_AUTHENTICATED)
    async with state.factory() as session:
        principal = await authenticate(session, credentials.credentials)
    if principal is None:
        raise AggregatorError(ErrorCode.NOT_AUTHENTICATED)
    return principal


def _analyst(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    if not principal.may(Role.ANALYST):
        raise AggregatorError(ErrorCode.FORBIDDEN)
    return principal


def _admin(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    if not principal.may(Role.ADMIN):
        raise AggregatorError(ErrorCode.FORBIDDEN)
    return principal


AnalystDep = Annotated[Principal, Depends(_analyst)]
AdminDep = Annotated[Principal, Depends(_admin)]
