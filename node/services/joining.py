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
from protocol.messages import JOIN, JoinRequest, JoinResponse
from protocol.signing import SigningKey, key_id_of, public_key_from_text, public_key_to_text, sign


class JoinError(RuntimeError):
    """Joining failed; the message is safe to show."""


def _problem_text(response: httpx.Response) -> str:
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
            f"cannot reach the aggregator at {base}: {describe_transport_error(exc)}"
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
