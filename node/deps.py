"""Dependencies for the node's routes, as Annotated aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from node.connector import Connector
from node.services.answering import Answerer
from node.services.approvals import Approvals
from node.services.benchmark import ReleaseSource
from node.settings import NodeSettings
from protocol.clock import Clock
from protocol.signing import SigningKey, Verifier


@dataclass
class NodeState:
    settings: NodeSettings
    writer: sessionmaker[Session]
    reader: sessionmaker[Session]
    key: SigningKey
    verifier: Verifier
    answerer: Answerer
    approvals: Approvals
    releases: ReleaseSource
    clock: Clock  # protocol time: task deadlines, approval windows
    connector: Connector | None = None


def _state(request: Request) -> NodeState:
    state: NodeState = request.app.state.node
    return state


StateDep = Annotated[NodeState, Depends(_state)]
