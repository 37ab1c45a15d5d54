"""Enrolling this node with a key holder: the node signs a join message with its own key (proof
that it holds the key it enrols) and keeps what the holder answers (its index, key set and
Ed25519 key) in ``keyholders.json``. Fingerprints are compared out of band, as with the
aggregator."""

from __future__ import annotations

from pathlib import Path

import httpx
from pydantic import ValidationError

from node import keyholders
from node.keyholders import KeyholderConfigError, KeyholderLink, SectorConfig
from protocol.sector import KEYHOLDER_JOIN, KeyholderJoinRequest, KeyholderJoinResponse
from protocol.signing import SigningKey, public_key_to_text, sign


class KeyholderJoinError(RuntimeError):
    """Enrolling failed; the message is safe to show."""


def join(
    home: Path,
    institution: str,
    key: SigningKey,
    url: str,
    invite: str,
    client: httpx.Client,
) -> tuple[KeyholderLink, SectorConfig]:
    base = url.rstrip("/")
    if not base.startswith(("https://", "http://127.", "http://localhost", "http://[::1]")):
        raise KeyholderJoinError(
            f"{base}: a key holder is reached over HTTPS (plain HTTP only on this machine)"
        )
    request = KeyholderJoinRequest(
        invite=invite.strip(), institution=institution, public_key=public_key_to_text(key.public)
    )
    envelope = sign(KEYHOLDER_JOIN, request.model_dump(mode="json"), key)
    try:
        response = client.post(
            f"{base}/v1/enrol",
            content=envelope.model_dump_json().encode("utf-8"),
            headers={"content-type": "application/json"},
        )
    except httpx.HTTPError as exc:
        raise KeyholderJoinError(f"cannot reach the key holder at {base}: {exc}") from None
    if response.status_code != 200:
        try:
            body = response.json()
            text = str(body.get("detail") or body.get("title"))
        except ValueError:
            text = f"HTTP {response.status_code}"
        raise KeyholderJoinError(f"the key holder refused: {text}")
    try:
        answer = KeyholderJoinResponse.model_validate_json(response.content)
    except ValidationError:
        raise KeyholderJoinError("the key holder's answer is malformed") from None
    info = answer.keyholder
    link = KeyholderLink(
        url=base,
        name=info.name,
        index=info.index,
        public_key=info.public_key,
        node_id=answer.node_id,
        public_share=info.public_share,
        max_batch=info.max_batch,
    )
    try:
        config = keyholders.load(home) or SectorConfig(
            info.key_set, info.threshold, info.holders, info.key_public
        )
        config.check_member(info.key_set, info.threshold, info.holders, info.key_public)
        config.add(link)
    except KeyholderConfigError as exc:
        raise KeyholderJoinError(str(exc)) from None
    keyholders.save(home, config)
    return link, config
