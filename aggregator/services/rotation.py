"""A node replaces its key: the rotation message is signed by its enrolled key and carries a
confirmation signed by the new key. Both keys are accepted for an overlap window, then only the
new one."""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.errors import AggregatorError, ErrorCode
from aggregator.services.writer import Writer
from aggregator.storage.models import Node
from protocol.messages import NODE_KEY_CONFIRM, NodeKeyRotation
from protocol.signing import (
    Envelope,
    SignatureError,
    key_id_of,
    public_key_from_text,
    verify_once,
)


def check(payload: dict[str, object], signed_by: str) -> NodeKeyRotation:
    """The rotation, once its confirmation is verified and its keys match the signer's."""
    try:
        message = NodeKeyRotation.model_validate(payload)
        new_key = public_key_from_text(message.new_key)
        confirmation = Envelope.model_validate(message.confirmation)
        confirmed = verify_once(confirmation, NODE_KEY_CONFIRM, new_key)
    except (ValidationError, ValueError, SignatureError) as exc:
        raise AggregatorError(
            ErrorCode.INVALID_REQUEST, f"not a valid key rotation: {str(exc)[:120]}"
        ) from None
    stated = {
        "old_key_id": message.old_key_id,
        "new_key_id": message.new_key_id,
        "new_key": message.new_key,
    }
    if (
        message.old_key_id != signed_by
        or message.new_key_id != key_id_of(new_key)
        or confirmed != stated
    ):
        raise AggregatorError(ErrorCode.INVALID_REQUEST, "the rotation's keys do not match")
    return message


async def rotate(writer: Writer, node_id: str, message: NodeKeyRotation, until: datetime) -> None:
    """Store the new key, keeping the old one until ``until``."""

    async def store(session: AsyncSession) -> bool:
        row = await session.get(Node, node_id)
        if row is None or row.status != "active" or row.key_id != message.old_key_id:
            return False
        taken = await session.scalar(select(Node.id).where(Node.key_id == message.new_key_id))
        if taken is not None:
            return False
        row.retired_key_id, row.retired_public_key = row.key_id, row.public_key
        row.retired_until = until
        row.key_id, row.public_key = message.new_key_id, message.new_key
        return True

    if not await writer.run(store):
        raise AggregatorError(
            ErrorCode.INVALID_REQUEST, "this key was rotated already, or the new key is in use"
        )
