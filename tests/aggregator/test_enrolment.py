"""Enrolment: one-time invite codes, lockout after wrong codes, proof of key possession, re-keying,
and secrets that are kept only as hashes."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from aggregator.services.enrolment import code_hash, normalise_code
from aggregator.services.tokens import token_hash
from aggregator.storage.models import ApiToken, Base, EnrolFailure, Invite
from protocol.messages import ANSWER, JOIN, JoinRequest, JoinResponse
from protocol.results import NodeStatus
from protocol.signing import SigningKey, public_key_to_text, sign
from tests.factories import Row
from tests.fedkit import AGG_URL, Federation, assert_problem, federation, hand_node, poll_body

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def join_body(
    code: str,
    key: SigningKey,
    *,
    enrolled: SigningKey | None = None,
    institution: str = "Schouwburg",
    now: datetime | None = None,
) -> bytes:
    """A 'join' envelope signed by ``key`` that enrols ``enrolled`` (by default: ``key``)."""
    request = JoinRequest(
        invite=code,
        institution=institution,
        public_key=public_key_to_text((enrolled or key).public),
    )
    envelope = sign(JOIN, request.model_dump(mode="json"), key, now=now)
    return envelope.model_dump_json().encode("utf-8")


async def enrol(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await client.post(
        "/v1/enrol", content=body, headers={"content-type": "application/json"}
    )


@asynccontextmanager
async def source(fed: Federation, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client to the aggregator that connects from another address."""
    transport = httpx.ASGITransport(fed.app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url=AGG_URL) as client:
        yield client


async def enrol_as(client: httpx.AsyncClient, body: bytes, forwarded_for: str) -> httpx.Response:
    headers = {"content-type": "application/json", "x-forwarded-for": forwarded_for}
    return await client.post("/v1/enrol", content=body, headers=headers)


async def invite(fed: Federation, **body: Any) -> dict[str, Any]:
    response = await fed.client.post(
        "/v1/admin/invites",
        json={"institution": "Schouwburg", **body},
        headers=fed.as_(fed.admin),
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# -- invite codes -------------------------------------------------------------------------------


async def test_an_invite_code_works_once(tmp_path: Path) -> None:
    async with federation(tmp_path, []) as fed:
        created = await invite(fed, institution="Stadsschouwburg")
        code = created["code"]
        assert len(normalise_code(code)) == 20 and code.count("-") == 3
        first = SigningKey.generate()
        response = await enrol(fed.client, join_body(code, first, institution="Anders genoemd"))
        assert response.status_code == 200, response.text
        joined = JoinResponse.model_validate(response.json())
        health = (await fed.client.get("/v1/health")).json()
        assert joined.institution == "Stadsschouwburg"  # the invite's name, not the node's claim
        assert joined.aggregator_key == health["public_key"]
        assert joined.aggregator_key_id == health["key_id"]
        assert created["aggregator_fingerprint"] == health["fingerprint"]

        again = await enrol(fed.client, join_body(code, SigningKey.generate()))
        assert_problem(again, 403, "invite_invalid")
        listed = (await fed.client.get("/v1/nodes", headers=fed.as_(fed.admin))).json()
        assert [(n["node_id"], n["key_id"]) for n in listed] == [(joined.node_id, first.key_id)]


async def test_a_code_read_out_over_the_phone_still_works(tmp_path: Path) -> None:
    async with federation(tmp_path, []) as fed:
        code = (await invite(fed))["code"]
        spoken = " ".join(code.lower().split("-"))
        response = await enrol(fed.client, join_body(spoken, SigningKey.generate()))
        assert response.status_code == 200, response.text


async def test_an_expired_invite_is_refused(tmp_path: Path) -> None:
    async with federation(tmp_path, []) as fed:
        fleeting = await invite(fed, valid_hours=1e-6)  # 3.6 ms
        await asyncio.sleep(0.01)
        assert datetime.fromisoformat(fleeting["expires_at"]) < datetime.now(UTC)
        response = await enrol(fed.client, join_body(fleeting["code"], SigningKey.generate()))
        assert_problem(response, 403, "invite_invalid")

        aged = await invite(fed)
        async with fed.app.state.aggregator.factory() as session, session.begin():
            await session.execute(
                update(Invite)
                .where(Invite.code_hash == code_hash(aged["code"]))
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        response = await enrol(fed.client, join_body(aged["code"], SigningKey.generate()))
        assert_problem(response, 403, "invite_invalid")


async def test_wrong_codes_lock_out_the_source(tmp_path: Path) -> None:
    settings: dict[str, object] = {
        "enrol_max_failures": 3,
        "enrol_max_failures_total": 5,
        "enrol_lockout_minutes": 15,
    }
    async with federation(tmp_path, [], agg_settings=settings) as fed:
        code = (await invite(fed))["code"]
        async with source(fed, "198.51.100.7") as guesser, source(fed, "203.0.113.9") as honest:
            near_miss = code[:-1] + ("Z" if code[-1] != "Z" else "Y")
            for guess in ("AAAAA-AAAAA-AAAAA-AAAAA", "BBBBB-BBBBB-BBBBB-BBBBB", near_miss):
                response = await enrol(guesser, join_body(guess, SigningKey.generate()))
                assert_problem(response, 403, "invite_invalid")
            # Locked: even the right code is not looked at (and so not used up).
            locked = await enrol(guesser, join_body(code, SigningKey.generate()))
            body = assert_problem(locked, 429, "enrol_locked")
            retry = int(locked.headers["retry-after"])
            assert 0 < retry <= 15 * 60 + 1
            assert body["retry_after_seconds"] == retry
            assert_problem(await enrol(guesser, b"{not json"), 429, "enrol_locked")

            # Another address is not locked by this one, and the code still works there.
            assert (await enrol(honest, join_body(code, SigningKey.generate()))).status_code == 200

            # Failures from all addresses together lock enrolment for everyone.
            for _ in range(2):
                response = await enrol(
                    honest, join_body("CCCCC-CCCCC-CCCCC-CCCCC", SigningKey.generate())
                )
                assert_problem(response, 403, "invite_invalid")
            fresh = (await invite(fed))["code"]
            async with source(fed, "192.0.2.44") as bystander:
                response = await enrol(bystander, join_body(fresh, SigningKey.generate()))
                assert_problem(response, 429, "enrol_locked")

                # The lockout ends once the failures are older than the lockout period.
                async with fed.app.state.aggregator.factory() as session, session.begin():
                    await session.execute(
                        update(EnrolFailure).values(at=datetime.now(UTC) - timedelta(minutes=16))
                    )
                response = await enrol(bystander, join_body(fresh, SigningKey.generate()))
                assert response.status_code == 200, response.text


async def test_a_used_code_is_refused_but_does_not_count_towards_the_lockout(
    tmp_path: Path,
) -> None:
    # A node whose join answer was lost sends its (now used) code again, more than once.
    settings: dict[str, object] = {"enrol_max_failures": 2, "enrol_max_failures_total": 2}
    async with federation(tmp_path, [], agg_settings=settings) as fed:
        used = (await invite(fed))["code"]
        assert (await enrol(fed.client, join_body(used, SigningKey.generate()))).status_code == 200
        for _ in range(4):
            response = await enrol(fed.client, join_body(used, SigningKey.generate()))
            assert_problem(response, 403, "invite_invalid")  # the same answer as a wrong code
        async with fed.app.state.aggregator.factory() as session:
            assert list(await session.scalars(select(EnrolFailure))) == []
        fresh = (await invite(fed))["code"]
        assert (await enrol(fed.client, join_body(fresh, SigningKey.generate()))).status_code == 200
        # Wrong codes still count.
        for _ in range(2):
            response = await enrol(
                fed.client, join_body("AAAAA-AAAAA-AAAAA-AAAAA", SigningKey.generate())
            )
            assert_problem(response, 403, "invite_invalid")
        response = await enrol(fed.client, join_body(used, SigningKey.generate()))
        assert_problem(response, 429, "enrol_locked")


async def test_behind_a_trusted_proxy_each_client_has_its_own_lockout(tmp_path: Path) -> None:
    # The TLS proxy connects from 10.0.0.2 and names the client in X-Forwarded-For.
    settings: dict[str, object] = {
        "enrol_max_failures": 3,
        "enrol_max_failures_total": 50,
        "forwarded_allow_ips": "10.0.0.2",
    }
    async with federation(tmp_path, [], agg_settings=settings) as fed:
        code = (await invite(fed))["code"]
        async with source(fed, "10.0.0.2") as proxy:
            for n, guess in enumerate(("AAAAA-AAAAA-AAAAA-AAAAA", "BBBBB-BBBBB-BBBBB-BBBBB") * 2):
                # nginx appends the real client to whatever the client claimed: the claim, at
                # the left, is not believed.
                claimed = f"192.0.2.{n}, 198.51.100.7"
                response = await enrol_as(proxy, join_body(guess, SigningKey.generate()), claimed)
                assert_problem(
                    response, 403 if n < 3 else 429, "invite_invalid" if n < 3 else "enrol_locked"
                )
            # Another client behind the same proxy is not locked out, and can join.
            response = await enrol_as(proxy, join_body(code, SigningKey.generate()), "203.0.113.9")
            assert response.status_code == 200, response.text
        async with fed.app.state.aggregator.factory() as session:
            sources = set(await session.scalars(select(EnrolFailure.source)))
        assert sources == {"198.51.100.7"}


async def test_a_client_not_behind_a_trusted_proxy_cannot_spoof_its_address(
    tmp_path: Path,
) -> None:
    settings: dict[str, object] = {
        "enrol_max_failures": 3,
        "enrol_max_failures_total": 50,
        "forwarded_allow_ips": "10.0.0.2",
    }
    async with federation(tmp_path, [], agg_settings=settings) as fed:
        code = (await invite(fed))["code"]
        async with source(fed, "198.51.100.7") as guesser:
            for n in range(3):
                body = join_body("AAAAA-AAAAA-AAAAA-AAAAA", SigningKey.generate())
                response = await enrol_as(guesser, body, f"192.0.2.{n}")
                assert_problem(response, 403, "invite_invalid")
            body = join_body(code, SigningKey.generate())
            assert_problem(await enrol_as(guesser, body, "192.0.2.99"), 429, "enrol_locked")
        async with fed.app.state.aggregator.factory() as session:
            sources = list(await session.scalars(select(EnrolFailure.source)))
        assert sources == ["198.51.100.7"] * 3


# -- proof of key possession --------------------------------------------------------------------


async def test_the_join_must_be_signed_by_the_key_it_enrols(tmp_path: Path) -> None:
    # One failure would lock enrolment: signature errors must not count as wrong codes.
    async with federation(tmp_path, [], agg_settings={"enrol_max_failures": 1}) as fed:
        code = (await invite(fed))["code"]
        mine, theirs = SigningKey.generate(), SigningKey.generate()
        response = await enrol(fed.client, join_body(code, mine, enrolled=theirs))
        assert_problem(response, 401, "bad_signature")

        claimed = json.loads(join_body(code, mine, enrolled=theirs))
        claimed["key_id"] = theirs.key_id  # claims to be signed by the enrolled key
        assert_problem(await enrol(fed.client, json.dumps(claimed).encode()), 401, "bad_signature")

        tampered = json.loads(join_body(code, mine))
        tampered["payload"]["institution"] = "Iemand anders"
        assert_problem(await enrol(fed.client, json.dumps(tampered).encode()), 401, "bad_signature")

        old = join_body(code, mine, now=datetime.now(UTC) - timedelta(hours=1))
        assert_problem(await enrol(fed.client, old), 401, "stale_message")
        wrong_type = sign("poll", json.loads(join_body(code, mine))["payload"], mine)
        response = await enrol(fed.client, wrong_type.model_dump_json().encode())
        assert_problem(response, 400, "wrong_message_type")
        malformed = sign(JOIN, {"invite": code}, mine).model_dump_json().encode()
        assert_problem(await enrol(fed.client, malformed), 422, "invalid_request")

        good = join_body(code, mine)
        assert (await enrol(fed.client, good)).status_code == 200
        assert_problem(await enrol(fed.client, good), 409, "replayed_message")


async def test_a_key_is_enrolled_once(tmp_path: Path) -> None:
    async with federation(tmp_path, []) as fed:
        first, second = (await invite(fed))["code"], (await invite(fed))["code"]
        key = SigningKey.generate()
        assert (await enrol(fed.client, join_body(first, key))).status_code == 200
        response = await enrol(fed.client, join_body(second, key))
        assert_problem(response, 409, "key_already_enrolled")
        # The second code was not used up by the refused attempt.
        assert (
            await enrol(fed.client, join_body(second, SigningKey.generate()))
        ).status_code == 200


# -- re-keying ----------------------------------------------------------------------------------


async def test_a_rekey_invite_replaces_the_nodes_key(tmp_path: Path) -> None:
    rows = [Row(person=p, event_date=date(2025, 3, p)) for p in range(1, 4)]
    async with federation(
        tmp_path,
        [rows],
        agg_settings={"unsafe_accept_exact_answers": True},
        node_settings={"unsafe_disable_noise": True},
        start_nodes=lambda _i: False,
    ) as fed:
        node = hand_node(fed, 0)
        spec = {"report": {"name": "volume", "year": 2025, "rho": 0.05, "mode": "independent"}}
        created = await fed.ask(**spec)  # pending while the node changes its key
        response = await fed.client.post(
            f"/v1/admin/nodes/{node.node_id}/rekey", headers=fed.as_(fed.admin)
        )
        assert response.status_code == 201, response.text
        rekey = response.json()
        assert rekey["node_id"] == node.node_id and rekey["institution"] == "Instelling 0"

        new = SigningKey.generate()
        response = await enrol(fed.client, join_body(rekey["code"], new))
        assert response.status_code == 200, response.text
        assert response.json()["node_id"] == node.node_id  # the same node, a new key
        assert_problem(
            await enrol(fed.client, join_body(rekey["code"], SigningKey.generate())),
            403,
            "invite_invalid",
        )

        old_poll = await fed.client.post("/v1/node/poll", content=poll_body(fed, node.key))
        assert_problem(old_poll, 401, "unknown_key")
        new_poll = await fed.client.post("/v1/node/poll", content=poll_body(fed, new))
        assert new_poll.status_code == 200, new_poll.text
        [task] = new_poll.json()["tasks"]
        assert task["payload"]["node_key_id"] == new.key_id

        old_signed = node.answer(task)
        url = f"/v1/node/tasks/{task['payload']['task_id']}/result"
        assert_problem(await fed.client.post(url, content=old_signed), 403, "wrong_node")
        new_signed = sign(ANSWER, json.loads(old_signed)["payload"], new)
        response = await fed.client.post(url, content=new_signed.model_dump_json().encode())
        assert response.status_code == 200, response.text
        result = await fed.wait(created.round_id)
        assert [n.status for n in result.coverage.nodes] == [NodeStatus.ANSWERED]

        listed = (await fed.client.get("/v1/nodes", headers=fed.as_(fed.analyst))).json()
        assert [(n["node_id"], n["key_id"]) for n in listed] == [(node.node_id, new.key_id)]


async def test_a_rekey_invite_cannot_take_over_another_nodes_key(tmp_path: Path) -> None:
    rows = [Row(person=1, event_date=date(2025, 3, 1))]
    async with federation(tmp_path, [rows, rows], start_nodes=lambda _i: False) as fed:
        a, b = hand_node(fed, 0), hand_node(fed, 1)
        response = await fed.client.post(
            f"/v1/admin/nodes/{a.node_id}/rekey", headers=fed.as_(fed.admin)
        )
        code = response.json()["code"]
        assert_problem(await enrol(fed.client, join_body(code, b.key)), 409, "key_already_enrolled")
        # A node removed after its re-key invite was made cannot come back with it.
        removed = await fed.client.delete(
            f"/v1/admin/nodes/{a.node_id}", headers=fed.as_(fed.admin)
        )
        assert removed.status_code == 204
        response = await enrol(fed.client, join_body(code, SigningKey.generate()))
        assert_problem(response, 403, "invite_invalid")


# -- secrets at rest ----------------------------------------------------------------------------


async def test_codes_and_tokens_are_stored_only_as_hashes(tmp_path: Path) -> None:
    async with federation(tmp_path, []) as fed:
        used = (await invite(fed))["code"]
        assert (await enrol(fed.client, join_body(used, SigningKey.generate()))).status_code == 200
        unused = (await invite(fed))["code"]
        secrets = [
            fed.admin,
            fed.analyst,
            used,
            unused,
            normalise_code(used),
            normalise_code(unused),
        ]

        dump: list[str] = []
        async with fed.app.state.aggregator.factory() as session:
            for table in Base.metadata.sorted_tables:
                dump += [repr(tuple(row)) for row in await session.execute(select(table))]
            hashes = set(await session.scalars(select(Invite.code_hash)))
            token_hashes = set(await session.scalars(select(ApiToken.token_hash)))
        text = "\n".join(dump)
        for secret in secrets:
            assert secret not in text
        assert hashes == {code_hash(used), code_hash(unused)}
        assert code_hash(used) == hashlib.sha256(normalise_code(used).encode()).hexdigest()
        assert token_hashes == {token_hash(fed.admin), token_hash(fed.analyst)}

        database = make_url(fed.settings.database_url).database
        assert database is not None
        files = [Path(database), Path(database + "-wal")]
        raw = b"".join(path.read_bytes() for path in files if path.exists())
        assert raw
        for secret in secrets:
            assert secret.encode() not in raw
