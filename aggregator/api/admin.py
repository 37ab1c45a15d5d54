"""The admins' part of the API (token): invites, removing and re-keying nodes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Response

from aggregator.deps import AdminDep, StateDep
from aggregator.errors import AggregatorError, ErrorCode
from aggregator.services import enrolment, registry
from aggregator.storage.models import Node
from protocol.api import InviteCreated, InviteRequest
from protocol.signing import fingerprint

router = APIRouter(prefix="/v1")


async def _invite(
    state: StateDep, who: str, institution: str, hours: float | None, node_id: str | None
) -> InviteCreated:
    valid = timedelta(hours=hours or state.settings.invite_valid_hours)

    async def create(session: Any) -> tuple[str, Any]:
        return await enrolment.create_invite(session, institution, who, valid, node_id)

    code, invite = await state.writer.run(create)
    return InviteCreated(
        code=code,
        institution=invite.institution,
        node_id=node_id,
        expires_at=invite.expires_at,
        aggregator_fingerprint=fingerprint(state.key.public),
    )


@router.post("/admin/invites", status_code=201, summary="Create a one-time invite code")
async def create_invite(body: InviteRequest, state: StateDep, who: AdminDep) -> InviteCreated:
    return await _invite(state, who.name, body.institution, body.valid_hours, None)


@router.delete("/admin/nodes/{node_id}", status_code=204, summary="Remove a node")
async def delete_node(node_id: str, state: StateDep, _: AdminDep) -> Response:
    async def remove(session: Any) -> list[str] | None:
        return await registry.remove_node(session, node_id)

    changed = await state.writer.run(remove)
    if changed is None:
        raise AggregatorError(ErrorCode.UNKNOWN_NODE)
    await state.node_keys.load()
    state.notifier.keys_changed()
    state.notifier.forget_node(node_id)
    for round_id in changed:
        await state.notifier.round_changed(round_id)
    return Response(status_code=204)


@router.post(
    "/admin/nodes/{node_id}/rekey",
    status_code=201,
    summary="An invite with which an enrolled node replaces its key",
)
async def rekey_node(node_id: str, state: StateDep, who: AdminDep) -> InviteCreated:
    async with state.factory() as session:
        node = await session.get(Node, node_id)
    if node is None or node.status != "active":
        raise AggregatorError(ErrorCode.UNKNOWN_NODE)
    return await _invite(state, who.name, node.institution, None, node_id)
