"""Joining an aggregator with a one-time invite: the node signs a join message with its own key
(proof that it holds the key it enrols), and trusts the aggregator key that comes back. Both
sides show fingerprints, to be compared out of band (by phone, say) before real use."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from node.link import AggregatorLink, load_link, save_link
from node.services.trust import trust_key, untrust_key
from node.settings import NodeSettings
from node.transport import (
    InsecureAggregatorURL,
    check_aggregator_url,
    describe_transport_error,
)
from protocol.connection import describe_answer
from protocol.messages import JOIN, JoinRequest, JoinResponse
from protocol.signing import SigningKey, key_id_of, public_key_from_text, public_key_to_text, sign


class JoinError(RuntimeError):
    """Joining failed; the message is safe to show."""


def _problem_text(response: httpx.Response) -> str:
    wrong_address = describe_answer(response)
    if wrong_address is not None:
        return f"cannot reach the aggregator: {wrong_address}"
    try:
        body = response.json()
        text = str(body.get("detail") or body.get("title") or "")
    except ValueError:
        text = ""
    return text or f"the aggregator answered HTTP {response.status_code}"


async def join(
    settings: NodeSettings,
    factory: sessionmaker[Session],
    key: SigningKey,
    url: str,
    invite: str,
    client: httpx.AsyncClient,
) -> AggregatorLink:
    base = url.rstrip("/")
    try:
        check_aggregator_url(base, settings)
    except InsecureAggregatorURL as exc:
        raise JoinError(str(exc)) from None
    request = JoinRequest(
        invite=invite.strip(),
        institution=settings.institution,
        public_key=public_key_to_text(key.public),
    )
    envelope = sign(JOIN, request.model_dump(mode="json"), key)
    try:
        response = await client.post(
            f"{base}/v1/enrol",
            content=envelope.model_dump_json(),
            headers={"content-type": "application/json"},
        )
    except httpx.HTTPError as exc:
        raise JoinError(
            f"cannot reach the aggregator at {base}: {await describe_transport_error(exc, base)}"
        ) from None
    if response.status_code != 200:
        raise JoinError(_problem_text(response))
    try:
        answer = JoinResponse.model_validate(response.json())
        aggregator_key = public_key_from_text(answer.aggregator_key)
    except (ValidationError, ValueError):
        raise JoinError("the aggregator's answer is not a valid join response") from None
    if key_id_of(aggregator_key) != answer.aggregator_key_id:
        raise JoinError("the aggregator's key does not match its key id")
    previous = load_link(settings.home)
    if previous is not None and previous.aggregator_key_id != answer.aggregator_key_id:
        untrust_key(factory, previous.aggregator_key_id)
    trust_key(factory, aggregator_key, f"aggregator {base}")
    link = AggregatorLink(
        url=base,
        node_id=answer.node_id,
        institution=answer.institution,
        aggregator_key=answer.aggregator_key,
        aggregator_key_id=answer.aggregator_key_id,
        joined_at=datetime.now(UTC),
    )
    save_link(settings.home, link)
    return link


class RotationError(RuntimeError):
    """The key rotation failed; nothing changed. The message is safe to show."""


async def rotate_key(
    settings: NodeSettings,
    factory: sessionmaker[Session],
    client: httpx.AsyncClient,
) -> tuple[SigningKey, str]:
    """Replace this node's signing key, announced to its aggregator: signed by the old key and
    confirmed by the new one. The new key is written beside the old one first and moved into
    place only when the aggregator has accepted it; the old key is kept as
    ``signing.key.old-<time>``. Returns the new key and the end of the aggregator's overlap
    window (until then it also accepts the old key, e.g. from a node not restarted yet)."""
    from node.identity import create_signing_key, load_signing_key
    from node.services import audit
    from node.storage.db import transaction
    from protocol.messages import NODE_KEY_CONFIRM, NODE_KEY_ROTATION
    from protocol.signing import fingerprint

    link = load_link(settings.home)
    if link is None:
        raise RotationError("this node has not joined an aggregator")
    try:
        check_aggregator_url(link.base, settings)
    except InsecureAggregatorURL as exc:
        raise RotationError(str(exc)) from None
    old = load_signing_key(settings.signing_key_path)
    pending = settings.signing_key_path.with_name(settings.signing_key_path.name + ".new")
    pending.unlink(missing_ok=True)
    new = create_signing_key(pending)
    stated = {
        "old_key_id": old.key_id,
        "new_key_id": new.key_id,
        "new_key": public_key_to_text(new.public),
    }
    confirmation = sign(NODE_KEY_CONFIRM, stated, new)
    envelope = sign(
        NODE_KEY_ROTATION, {**stated, "confirmation": confirmation.model_dump(mode="json")}, old
    )
    try:
        response = await client.post(
            f"{link.base}/v1/node/rotate",
            content=envelope.model_dump_json(),
            headers={"content-type": "application/json"},
        )
    except httpx.HTTPError as exc:
        pending.unlink(missing_ok=True)
        raise RotationError(
            f"cannot reach the aggregator at {link.base}: "
            f"{await describe_transport_error(exc, link.base)}"
        ) from None
    if response.status_code != 200:
        pending.unlink(missing_ok=True)
        raise RotationError(_problem_text(response))
    until = str(response.json().get("overlap_until", ""))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    settings.signing_key_path.rename(
        settings.signing_key_path.with_name(f"{settings.signing_key_path.name}.old-{stamp}")
    )
    pending.rename(settings.signing_key_path)
    with transaction(factory) as session:
        audit.append(
            session,
            audit.KEY_ROTATION,
            own_key=True,
            old_key_id=old.key_id,
            new_key_id=new.key_id,
            fingerprint=fingerprint(new.public),
            overlap_until=until,
        )
    return new, until
