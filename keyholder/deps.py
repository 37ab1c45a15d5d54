"""The key holder's state, owned by the app's lifespan, as a route dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from keyholder.services.evaluation import NodeKeys
from keyholder.settings import KeyholderSettings
from keyholder.share import ShareFile
from protocol.clock import Clock
from protocol.signing import MemoryNonceStore, SigningKey, Verifier


@dataclass
class KeyholderState:
    settings: KeyholderSettings
    factory: sessionmaker[Session]
    share: ShareFile
    key: SigningKey
    clock: Clock
    node_keys: NodeKeys
    verifier: Verifier
    join_nonces: MemoryNonceStore


def _state(request: Request) -> KeyholderState:
    state: KeyholderState = request.app.state.keyholder
    return state


StateDep = Annotated[KeyholderState, Depends(_state)]
