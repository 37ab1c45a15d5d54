"""The federation against bad actors: nodes that are down, slow, confused or malicious, replays,
tampered tasks, and callers without the right token.

Each test runs the real aggregator and real node apps in process (tests/fedkit.py). A node that
misbehaves is a ``HandNode``: an enrolled node whose app does not run, so that the test signs its
polls and posts its results itself. Every attack must be answered with the exact problem code,
and every round must still complete for the honest nodes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from aggregator.services.tokens import Role, create_token, revoke_token
from aggregator.storage.models import ApiToken, Node, Task
from node.connector import Connector
from node.link import load_link
from node.storage.db import make_engine
from protocol.messages import ANSWER, POLL, TASK, BudgetStatus, Poll, RefusalReason
from protocol.results import NodeOutcome, NodeStatus, RoundResult, RoundState
from protocol.signing import SigningKey, sign
from tests.factories import Row
from tests.fedkit import (
    Federation,
    HandNode,
    assert_problem,
    federation,
    hand_node,
    node_report,
    poll_body,
)
from tests.nodekit import budget_tables, make_spec
from tests.protocol.test_json_gate import HOSTILE_BODIES

pytestmark = pytest.mark.anyio

EXACT: dict[str, Any] = {
    "agg_settings": {"unsafe_accept_exact_answers": True},
    "node_settings": {"unsafe_disable_noise": True},
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def visits(n: int) -> list[Row]:
    """``n`` theatre visits by ``n`` persons in 2025."""
    return [Row(person=p, event_date=date(2025, 3, p)) for p in range(1, n + 1)]


def question(**extra: Any) -> dict[str, Any]:
    """A round request: theatre visits by artform in 2025, ρ = 0.05."""
    return {"spec": make_spec(rho=0.05).model_dump(mode="json"), **extra}


def theatre(result: RoundResult) -> int:
    return result.measure("visits").estimates[result.cells.index(("theatre",))]


def outcome(result: RoundResult, node_id: str) -> NodeOutcome:
    [found] = [n for n in result.coverage.nodes if n.node_id == node_id]
    return found


async def current(fed: Federation, round_id: str) -> RoundResult:
    response = await fed.client.get(f"/v1/rounds/{round_id}", headers=fed.as_(fed.analyst))
    assert response.status_code == 200, response.text
    return RoundResult.model_validate(response.json())


def task_id(task: dict[str, Any]) -> str:
    return str(task["payload"]["task_id"])


def node_id(fed: Federation, i: int) -> str:
    link = load_link(fed.nodes[i].home)
    assert link is not None
    return link.node_id


# -- nodes that are down or slow ----------------------------------------------------------------


async def test_a_node_that_is_down_times_out_and_the_quorum_decides(tmp_path: Path) -> None:
    async with federation(
        tmp_path, [visits(3), visits(4), visits(5)], start_nodes=lambda i: i != 2, **EXACT
    ) as fed:
        down = node_id(fed, 2)
        met = await fed.ask(**question(deadline_seconds=2))  # quorum: half of 3, rounded up
        unmet = await fed.ask(**question(deadline_seconds=2, quorum=3))
        assert met.quorum == 2 and unmet.quorum == 3
        assert met.state is RoundState.OPEN
        # Time stands still, so both rounds share one deadline: move there once both settled.
        await fed.settled(met.round_id, silent=1)
        await fed.expire(unmet.round_id, silent=1)
        results = [await fed.wait(met.round_id), await fed.wait(unmet.round_id)]
        for result in results:
            assert result.state is RoundState.CLOSED
            assert result.closed_at is not None
            assert result.closed_at >= result.deadline - timedelta(milliseconds=100)
            coverage = result.coverage
            assert (coverage.total, coverage.answered, coverage.timed_out) == (3, 2, 1)
            assert coverage.pending == coverage.refused == coverage.invalid == 0
            assert outcome(result, down) == NodeOutcome(
                node_id=down,
                institution="Instelling 2",
                status=NodeStatus.TIMED_OUT,
                reason="not_delivered",
            )
            assert all(
                n.status is NodeStatus.ANSWERED and n.reason is None
                for n in coverage.nodes
                if n.node_id != down
            )
            assert result.partial
        reached, missed = results
        assert reached.quorum_met
        assert theatre(reached) == 3 + 4  # the honest nodes' exact figures, merged
        assert not missed.quorum_met
        assert missed.measures == () and missed.ratios == ()


async def test_a_node_held_up_in_real_time_still_meets_a_deadline_in_protocol_time(
    tmp_path: Path,
) -> None:
    """Deadlines run on the injected clock: a node held up for longer than the round's whole
    deadline in real time (a busy machine) still answers in time, as protocol time stood still."""
    async with federation(tmp_path, [visits(3), visits(4)], **EXACT) as fed:
        conn = fed.node_apps[1].state.node.connector
        assert isinstance(conn, Connector)
        deliver = conn._deliver

        async def held_up(task: Any, body: bytes) -> None:
            await asyncio.sleep(1.5)  # real time, beyond deadline_seconds=1
            await deliver(task, body)

        conn._deliver = held_up  # type: ignore[method-assign]
        created = await fed.ask(**question(deadline_seconds=1, quorum=2))
        result = await fed.wait(created.round_id)
    assert result.state is RoundState.CLOSED and result.coverage.answered == 2
    assert theatre(result) == 3 + 4
    assert result.closed_at is not None and result.closed_at < result.deadline


async def test_a_slow_node_times_out_and_its_late_answer_is_refused(tmp_path: Path) -> None:
    async with federation(
        tmp_path, [visits(3), visits(4)], start_nodes=lambda i: i == 0, **EXACT
    ) as fed:
        slow = hand_node(fed, 1)
        created = await fed.ask(**question(deadline_seconds=2, quorum=1))
        [task] = await slow.tasks()  # it receives the task ...
        late = slow.answer(task)  # ... and answers it, but only after the deadline
        await fed.expire(created.round_id, silent=1)
        result = await fed.wait(created.round_id)
        assert result.state is RoundState.CLOSED
        assert outcome(result, slow.node_id).status is NodeStatus.TIMED_OUT
        assert outcome(result, slow.node_id).reason is None  # it was delivered
        assert result.quorum_met and result.partial
        assert theatre(result) == 3
        assert_problem(await slow.post(task_id(task), late), 409, "round_closed")
        assert await current(fed, created.round_id) == result
        assert await slow.tasks() == []  # a closed round hands out nothing


# -- nodes that send rubbish --------------------------------------------------------------------


async def test_garbage_and_bad_signatures_leave_the_task_pending(tmp_path: Path) -> None:
    async with federation(tmp_path, [visits(3)], start_nodes=lambda _i: False, **EXACT) as fed:
        node = hand_node(fed, 0)
        created = await fed.ask(**question())
        [task] = await node.tasks()
        url = task_id(task)

        async def still_pending() -> None:
            result = await current(fed, created.round_id)
            assert result.state is RoundState.OPEN
            assert outcome(result, node.node_id).status is NodeStatus.PENDING

        for garbage in (b"{not json", b"", b"\xff\xfe\x00garbage", b'{"a": '):
            assert_problem(await node.post(url, garbage), 400, "malformed_json")
        for document in ({"hello": "world"}, [1, 2, 3], "answer", None, {"type": "answer"}):
            response = await node.post(url, json.dumps(document).encode())
            assert_problem(response, 422, "invalid_request")
        await still_pending()

        genuine = node.answer(task)
        tampered = json.loads(genuine)
        tampered["payload"]["measures"][0]["values"][0] += 1000
        flipped = json.loads(genuine)
        flipped["signature"] = flipped["signature"][::-1]
        stranger = SigningKey.generate()
        forged = sign(ANSWER, json.loads(genuine)["payload"], stranger).model_dump(mode="json")
        forged["key_id"] = node.key.key_id  # claims to be the node, signed by someone else
        for document in (tampered, flipped, forged):
            response = await node.post(url, json.dumps(document).encode())
            assert_problem(response, 401, "bad_signature")
        wrong_type = sign(POLL, json.loads(genuine)["payload"], node.key)
        response = await node.post(url, wrong_type.model_dump_json().encode())
        assert_problem(response, 400, "wrong_message_type")
        response = await node.post("no-such-task", genuine)
        assert_problem(response, 404, "task_not_found")
        await still_pending()

        assert (await node.post(url, genuine)).status_code == 200
        result = await fed.wait(created.round_id)
        assert outcome(result, node.node_id).status is NodeStatus.ANSWERED
        assert theatre(result) == 3


async def test_a_node_cannot_answer_another_nodes_task(tmp_path: Path) -> None:
    async with federation(
        tmp_path, [visits(3), visits(4)], start_nodes=lambda _i: False, **EXACT
    ) as fed:
        a, b = hand_node(fed, 0), hand_node(fed, 1)
        created = await fed.ask(**question())
        [for_a], [for_b] = await a.tasks(), await b.tasks()
        assert for_a["payload"]["node_key_id"] == a.key.key_id
        assert for_b["payload"]["node_key_id"] == b.key.key_id
        answer_a = a.answer(for_a)
        assert_problem(await a.post(task_id(for_b), answer_a), 403, "wrong_node")
        # A stranger's correctly signed answer is not the node's either.
        stranger = sign(ANSWER, json.loads(answer_a)["payload"], SigningKey.generate())
        response = await a.post(task_id(for_b), stranger.model_dump_json().encode())
        assert_problem(response, 403, "wrong_node")
        result = await current(fed, created.round_id)
        assert {n.status for n in result.coverage.nodes} == {NodeStatus.PENDING}

        assert (await a.post(task_id(for_a), answer_a)).status_code == 200
        assert (await b.post(task_id(for_b), b.answer(for_b))).status_code == 200
        result = await fed.wait(created.round_id)
        assert result.coverage.answered == 2 and theatre(result) == 3 + 4


# -- replays ------------------------------------------------------------------------------------


async def test_a_repeated_answer_is_idempotent_only_when_byte_identical(tmp_path: Path) -> None:
    async with federation(
        tmp_path, [visits(3), visits(4)], start_nodes=lambda _i: False, **EXACT
    ) as fed:
        a, b = hand_node(fed, 0), hand_node(fed, 1)
        created = await fed.ask(**question())
        [task] = await a.tasks()
        body = a.answer(task)
        first = await a.post(task_id(task), body)
        assert first.status_code == 200 and first.json() == {"status": "accepted"}
        again = await a.post(task_id(task), body)  # a retry after a lost response
        assert again.status_code == 200 and again.json() == {"status": "accepted"}

        resigned = sign(ANSWER, json.loads(body)["payload"], a.key)  # same answer, new envelope
        response = await a.post(task_id(task), resigned.model_dump_json().encode())
        assert_problem(response, 409, "already_answered")
        refusal = a.refusal(task, RefusalReason.BUDGET_EXHAUSTED, "changed my mind")
        assert_problem(await a.post(task_id(task), refusal), 409, "already_answered")

        [for_b] = await b.tasks()
        assert (await b.post(task_id(for_b), b.answer(for_b))).status_code == 200
        result = await fed.wait(created.round_id)
        assert outcome(result, a.node_id).status is NodeStatus.ANSWERED
        assert theatre(result) == 3 + 4
        assert (await a.post(task_id(task), body)).status_code == 200  # still idempotent


async def test_an_answer_from_an_old_round_does_not_answer_a_new_one(tmp_path: Path) -> None:
    async with federation(tmp_path, [visits(3)], start_nodes=lambda _i: False, **EXACT) as fed:
        node = hand_node(fed, 0)
        old_round = await fed.ask(**question())
        [old] = await node.tasks()
        old_answer = node.answer(old)
        assert (await node.post(task_id(old), old_answer)).status_code == 200
        assert (await fed.wait(old_round.round_id)).state is RoundState.CLOSED

        new_round = await fed.ask(**question())
        [new] = await node.tasks()
        assert task_id(new) != task_id(old)
        body = assert_problem(await node.post(task_id(new), old_answer), 422, "answer_mismatch")
        assert body["detail"] == "the answer is for another query"
        result = await current(fed, new_round.round_id)
        assert outcome(result, node.node_id).status is NodeStatus.PENDING
        assert result.state is RoundState.OPEN

        assert (await node.post(task_id(new), node.answer(new))).status_code == 200
        assert theatre(await fed.wait(new_round.round_id)) == 3


async def test_a_replayed_or_stale_poll_is_refused(tmp_path: Path) -> None:
    async with federation(tmp_path, [visits(3)], start_nodes=lambda _i: False) as fed:
        node = hand_node(fed, 0)
        body = poll_body(fed, node.key)
        assert (await node.poll(body)).status_code == 200
        assert_problem(await node.poll(body), 409, "replayed_message")

        message = Poll(
            aggregator_key_id=fed.app.state.aggregator.key.key_id,
            report=node_report(),
            wait_seconds=0,
        ).model_dump(mode="json")
        age = timedelta(seconds=fed.settings.message_max_age_seconds + 60)
        old = sign(POLL, message, node.key, now=datetime.now(UTC) - age)
        assert_problem(await node.poll(old.model_dump_json().encode()), 401, "stale_message")
        tampered = sign(POLL, message, node.key).model_dump(mode="json")
        tampered["payload"]["wait_seconds"] = 5
        assert_problem(await node.poll(json.dumps(tampered).encode()), 401, "bad_signature")
        other_aggregator = {**message, "aggregator_key_id": "0" * 16}
        envelope = sign(POLL, other_aggregator, node.key)
        assert_problem(await node.poll(envelope.model_dump_json().encode()), 422, "invalid_request")


# -- tampered tasks -----------------------------------------------------------------------------


async def test_a_node_rejects_tampered_and_misaddressed_tasks(tmp_path: Path) -> None:
    async with federation(
        tmp_path,
        [visits(3), visits(4)],
        agg_settings={"unsafe_accept_exact_answers": True},
        node_settings={"unsafe_disable_noise": True, "connect": False},
        start_nodes=lambda i: i == 0,
    ) as fed:
        state = fed.node_apps[0].state.node
        assert state.connector is None  # connect=False: the test hands it its tasks
        link = load_link(state.settings.home)
        assert link is not None
        connector = Connector(  # as node.app builds it, minus the polling loop
            settings=state.settings,
            link=link,
            key=state.key,
            answerer=state.answerer,
            verifier=state.verifier,
            budget=lambda: BudgetStatus(period="2025", cap_rho=1.0, spent_rho=0.0),
            client=fed.client,
            factory=state.writer,
        )
        me, other = hand_node(fed, 0), hand_node(fed, 1)
        assert me.key.key_id == state.key.key_id
        created = await fed.ask(**question())
        [mine], [theirs] = await me.tasks(), await other.tasks()

        def altered(task: dict[str, Any], *path: str, value: Any) -> dict[str, Any]:
            copy: dict[str, Any] = json.loads(json.dumps(task))
            target = copy
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = value
            return copy

        spec = ("payload", "request", "spec")
        attacks = [
            altered(mine, *spec, "privacy", "rho", value=0.01),  # cheaper than it really is
            altered(mine, *spec, "group_by", value=["age_band"]),
            altered(mine, "payload", "deadline", value="2099-01-01T00:00:00+00:00"),
            altered(theirs, "payload", "node_key_id", value=me.key.key_id),  # redirected
            sign(TASK, mine["payload"], SigningKey.generate()).model_dump(mode="json"),
            altered(mine, "type", value="query"),
            theirs,  # genuine, but addressed to the other node
        ]
        engine = make_engine(fed.nodes[0].database_url)
        try:
            before = budget_tables(engine)
            for attack in attacks:
                await connector.handle(attack)
            assert connector.status.tasks_rejected == len(attacks)
            assert connector.status.tasks_answered == 0
            assert budget_tables(engine) == before
            assert before.entries == []
            result = await current(fed, created.round_id)
            assert {n.status for n in result.coverage.nodes} == {NodeStatus.PENDING}

            await connector.handle(mine)  # the genuine task still works
            assert connector.status.tasks_answered == 1
            assert len(budget_tables(engine).entries) == 1
        finally:
            engine.dispose()
        result = await current(fed, created.round_id)
        assert outcome(result, me.node_id).status is NodeStatus.ANSWERED
        assert outcome(result, other.node_id).status is NodeStatus.PENDING


# -- callers without the right token ------------------------------------------------------------

ANALYST_ENDPOINTS = [
    ("GET", "/v1/nodes"),
    ("GET", "/v1/rounds"),
    ("POST", "/v1/rounds"),
    ("GET", "/v1/rounds/some-round"),
]
ADMIN_ENDPOINTS = [
    ("POST", "/v1/admin/invites"),
    ("DELETE", "/v1/admin/nodes/n0123456789"),
    ("POST", "/v1/admin/nodes/n0123456789/rekey"),
]


async def test_tokens_are_required_and_roles_are_enforced(tmp_path: Path) -> None:
    async with federation(tmp_path, []) as fed:

        async def call(method: str, path: str, authorization: str | None) -> Any:
            headers = {} if authorization is None else {"authorization": authorization}
            body = {"institution": "X"} if path.endswith("invites") else question()
            kwargs: dict[str, Any] = {"json": body} if method == "POST" else {}
            return await fed.client.request(method, path, headers=headers, **kwargs)

        for method, path in ANALYST_ENDPOINTS + ADMIN_ENDPOINTS:
            assert_problem(await call(method, path, None), 401, "not_authenticated")
        for method, path in ADMIN_ENDPOINTS:
            response = await call(method, path, f"Bearer {fed.analyst}")
            assert_problem(response, 403, "forbidden")
        assert (await call("GET", "/v1/nodes", f"Bearer {fed.admin}")).status_code == 200

        garbage = [
            "Bearer garbage",
            "Bearer pd_" + "x" * 43,
            "Bearer " + fed.analyst[:-1] + ("A" if fed.analyst[-1] != "A" else "B"),
            "Bearer pd_" + "a" * 300,
            f"Basic {fed.analyst}",
            fed.analyst,
            "Bearer",
        ]
        for authorization in garbage:
            response = await call("GET", "/v1/nodes", authorization)
            assert_problem(response, 401, "not_authenticated")

        factory = fed.app.state.aggregator.factory
        async with factory() as session, session.begin():
            token, row = await create_token(session, "leaver", Role.ADMIN)
        assert (await call("GET", "/v1/nodes", f"Bearer {token}")).status_code == 200
        async with factory() as session, session.begin():
            assert await revoke_token(session, row.id)
        for method, path in [("GET", "/v1/nodes"), *ADMIN_ENDPOINTS]:
            assert_problem(await call(method, path, f"Bearer {token}"), 401, "not_authenticated")
        async with factory() as session:
            revoked = await session.scalar(select(ApiToken).where(ApiToken.id == row.id))
            assert revoked is not None and revoked.revoked_at is not None


# -- unknown and removed nodes ------------------------------------------------------------------


async def test_unknown_and_removed_nodes_are_shut_out(tmp_path: Path) -> None:
    async with federation(
        tmp_path, [visits(3), visits(4), visits(5)], start_nodes=lambda i: i < 2, **EXACT
    ) as fed:
        stranger = SigningKey.generate()
        response = await fed.client.post("/v1/node/poll", content=poll_body(fed, stranger))
        assert_problem(response, 401, "unknown_key")

        gone = hand_node(fed, 2)
        before = await fed.ask(**question())
        [task] = await gone.tasks()
        answer = gone.answer(task)
        # A long-poll that is hanging when the node is removed ends with 401 at once.
        hanging = asyncio.create_task(gone.poll(wait=20, in_flight=(task_id(task),)))
        await asyncio.sleep(0.2)
        assert not hanging.done()
        removed = await fed.client.delete(
            f"/v1/admin/nodes/{gone.node_id}", headers=fed.as_(fed.admin)
        )
        assert removed.status_code == 204
        assert_problem(await asyncio.wait_for(hanging, 5), 401, "unknown_key")

        assert_problem(await gone.poll(), 401, "unknown_key")
        assert_problem(await gone.post(task_id(task), answer), 401, "unknown_key")
        # Its unsettled task times out at once, so the round need not wait for the deadline.
        earlier = await fed.wait(before.round_id)
        assert earlier.state is RoundState.CLOSED
        removed_outcome = outcome(earlier, gone.node_id)
        assert removed_outcome.status is NodeStatus.TIMED_OUT
        assert removed_outcome.reason == "node_removed"
        assert earlier.coverage.answered == 2
        after = await fed.wait((await fed.ask(**question())).round_id)
        assert gone.node_id not in {n.node_id for n in after.coverage.nodes}
        assert after.coverage.total == after.coverage.answered == 2
        assert not after.partial and theatre(after) == 3 + 4
        listed = (await fed.client.get("/v1/nodes", headers=fed.as_(fed.analyst))).json()
        assert gone.node_id not in {n["node_id"] for n in listed}
        response = await fed.client.post(
            "/v1/rounds", json=question(nodes=[gone.node_id]), headers=fed.as_(fed.analyst)
        )
        assert_problem(response, 404, "unknown_node")
        for method, path in [
            ("DELETE", f"/v1/admin/nodes/{gone.node_id}"),
            ("POST", f"/v1/admin/nodes/{gone.node_id}/rekey"),
        ]:
            response = await fed.client.request(method, path, headers=fed.as_(fed.admin))
            assert_problem(response, 404, "unknown_node")


# -- refusals and budgets -----------------------------------------------------------------------


async def test_a_refusal_carries_only_its_reason_code(tmp_path: Path) -> None:
    async with federation(
        tmp_path, [visits(3), visits(4), visits(5)], start_nodes=lambda i: i == 0, **EXACT
    ) as fed:
        refuser, muddled = hand_node(fed, 1), hand_node(fed, 2)
        created = await fed.ask(**question(quorum=1))
        secret = "Directeur Jansen: nog 0.0123 rho over tot 1 juli"
        [task] = await refuser.tasks()
        body = refuser.refusal(task, RefusalReason.POLICY_DIMENSION, secret)
        assert (await refuser.post(task_id(task), body)).status_code == 200
        # A signed refusal for this query that is malformed is recorded as invalid.
        [task] = await muddled.tasks()
        refusal = json.loads(muddled.refusal(task, RefusalReason.POLICY_CELLS, secret))
        malformed = {**refusal["payload"], "reason": "because " + secret}
        envelope = sign("refusal", malformed, muddled.key)
        response = await muddled.post(task_id(task), envelope.model_dump_json().encode())
        problem = assert_problem(response, 422, "answer_mismatch")
        assert "Jansen" not in json.dumps(problem)

        result = await fed.wait(created.round_id)
        assert outcome(result, refuser.node_id).status is NodeStatus.REFUSED
        assert outcome(result, refuser.node_id).reason == "policy_dimension_not_allowed"
        assert outcome(result, muddled.node_id).status is NodeStatus.INVALID
        assert outcome(result, muddled.node_id).reason == "malformed_refusal"
        assert (result.coverage.answered, result.coverage.refused) == (1, 1)
        assert result.coverage.invalid == 1
        assert result.quorum_met and result.partial and theatre(result) == 3
        for path in (f"/v1/rounds/{created.round_id}", "/v1/rounds", "/v1/nodes"):
            response = await fed.client.get(path, headers=fed.as_(fed.analyst))
            assert response.status_code == 200
            assert "Jansen" not in response.text and "0.0123" not in response.text


async def test_a_node_that_reported_an_exhausted_budget_is_refused_up_front(
    tmp_path: Path,
) -> None:
    async with federation(
        tmp_path, [visits(3), visits(4), visits(5)], start_nodes=lambda i: i < 2, **EXACT
    ) as fed:
        broke = hand_node(fed, 2)
        # Before the node has reported anything the aggregator cannot know: the round goes out.
        first = await fed.ask(**question())
        assert first.coverage.total == 3
        # Its next poll carries its signed report: the budget is spent.
        spent = node_report("Instelling 2", cap_rho=1.0, spent_rho=1.0)
        [task] = await broke.tasks(report=spent)
        refusal = broke.refusal(task, RefusalReason.BUDGET_EXHAUSTED, "op")
        assert (await broke.post(task_id(task), refusal)).status_code == 200
        assert (await fed.wait(first.round_id)).coverage.refused == 1

        response = await fed.client.post(
            "/v1/rounds", json=question(), headers=fed.as_(fed.analyst)
        )
        body = assert_problem(response, 409, "would_be_refused")
        assert body["nodes"] == [
            {"node_id": broke.node_id, "institution": "Instelling 2", "reason": "budget_exhausted"}
        ]
        rounds = (await fed.client.get("/v1/rounds", headers=fed.as_(fed.analyst))).json()
        assert [r["round_id"] for r in rounds] == [first.round_id]  # nothing was sent

        others = [node_id(fed, 0), node_id(fed, 1)]
        without = await fed.wait((await fed.ask(**question(nodes=others))).round_id)
        assert without.coverage.total == without.coverage.answered == 2
        assert theatre(without) == 3 + 4


async def test_real_nodes_that_spent_their_budget_are_refused_up_front(tmp_path: Path) -> None:
    async with federation(
        tmp_path,
        [visits(3), visits(4)],
        agg_settings={"unsafe_accept_exact_answers": True},
        node_settings={"unsafe_disable_noise": True, "budget_rho": 0.06},
    ) as fed:
        first = await fed.wait((await fed.ask(**question())).round_id)
        assert first.coverage.answered == 2
        response = await fed.client.post(
            "/v1/rounds", json=question(), headers=fed.as_(fed.analyst)
        )
        body = assert_problem(response, 409, "would_be_refused")
        assert sorted(body["nodes"], key=lambda n: n["institution"]) == [
            {"node_id": node_id(fed, i), "institution": f"Instelling {i}", "reason": reason}
            for i, reason in enumerate(["budget_exhausted"] * 2)
        ]
        listed = (await fed.client.get("/v1/nodes", headers=fed.as_(fed.analyst))).json()
        assert [n["budget"]["remaining_rho"] for n in listed] == [pytest.approx(0.01)] * 2


# -- hostile JSON: no body causes a 500 ---------------------------------------------------------

BODY_ENDPOINTS = [
    "/v1/enrol",
    "/v1/node/poll",
    "/v1/node/rotate",
    "/v1/node/tasks/some-task/result",
    "/v1/rounds",
    "/v1/rounds/preview",
    "/v1/admin/invites",
    "/v1/releases",
]


async def test_hostile_json_gets_a_problem_document_at_every_endpoint(tmp_path: Path) -> None:
    async with federation(tmp_path, []) as fed:
        for path in BODY_ENDPOINTS:
            for body, code in HOSTILE_BODIES.items():
                for content_type in ("application/json", "text/plain", None):
                    headers = fed.as_(fed.admin)
                    if content_type is not None:
                        headers["content-type"] = content_type
                    response = await fed.client.post(path, content=body, headers=headers)
                    assert_problem(response, 400, code)

            async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: chunked
                for part in (b"[", b"]"):
                    for _ in range(1000):
                        yield part

            response = await fed.client.post(path, content=streamed(), headers=fed.as_(fed.admin))
            assert_problem(response, 400, "json_too_deep")
        # Sent as a form, the gate leaves a body to the route; the signed-message endpoints read
        # their body as JSON whatever its type, through the same parser.
        form_types = ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x")
        for path in BODY_ENDPOINTS[:4]:
            for body, code in HOSTILE_BODIES.items():
                for content_type in form_types:
                    headers = {"content-type": content_type}
                    response = await fed.client.post(path, content=body, headers=headers)
                    assert_problem(response, 400, code)
        # A form is not JSON; the gate leaves it to the route.
        response = await fed.client.post(
            "/v1/rounds", data={"spec": "[" * 1000}, headers=fed.as_(fed.analyst)
        )
        assert_problem(response, 422, "invalid_request")


def _with_number(envelope: bytes, number: bytes) -> bytes:
    """A signed message with one of its payload numbers replaced by ``number`` verbatim."""
    text = envelope.replace(b'"wait_seconds":0.0', b'"wait_seconds":' + number, 1)
    assert text != envelope
    return text


async def test_non_finite_and_huge_numbers_in_signed_messages_are_refused(tmp_path: Path) -> None:
    async with federation(tmp_path, [visits(3)], start_nodes=lambda _i: False, **EXACT) as fed:
        node = hand_node(fed, 0)
        for number in (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"9007199254740993"):
            body = _with_number(poll_body(fed, node.key), number)
            assert_problem(await node.poll(body), 400, "json_number_invalid")
            response = await node.post("some-task", body)
            assert_problem(response, 400, "json_number_invalid")
        assert (await node.poll()).status_code == 200  # the node is still welcome


async def test_a_poll_reporting_an_absurd_or_negative_budget_is_refused(tmp_path: Path) -> None:
    async with federation(tmp_path, [visits(3)], start_nodes=lambda _i: False, **EXACT) as fed:
        node = hand_node(fed, 0)
        good = node_report().model_dump(mode="json")
        for field, value in [
            ("spent_rho", 1e300),
            ("spent_rho", -0.5),
            ("cap_rho", -1.0),
            ("cap_rho", 1e300),
        ]:
            report = {**good, "budget": {**good["budget"], field: value}}
            message = {
                "aggregator_key_id": fed.app.state.aggregator.key.key_id,
                "report": report,
                "wait_seconds": 0,
            }
            envelope = sign(POLL, message, node.key).model_dump_json().encode()
            assert_problem(await node.poll(envelope), 422, "invalid_request")
        for path in ("/v1/nodes", "/v1/rounds"):
            response = await fed.client.get(path, headers=fed.as_(fed.analyst))
            assert response.status_code == 200, response.text
        created = await fed.ask(**question())  # nothing absurd was recorded: the round goes out
        [task] = await node.tasks()
        assert (await node.post(task_id(task), node.answer(task))).status_code == 200
        assert theatre(await fed.wait(created.round_id)) == 3


# -- answers that claim the wrong noise or impossible values ------------------------------------


def _forged(node: HandNode, task: dict[str, Any], **change: Any) -> bytes:
    """The node's real answer with its first measure changed, signed again by the node: what a
    compromised node could send."""
    payload = json.loads(node.answer(task))["payload"]
    measure = payload["measures"][0]
    values = change.pop("values", None)
    if values is not None:
        measure["values"] = [values(v) for v in measure["values"]]
    measure.update(change)
    return sign(ANSWER, payload, node.key).model_dump_json().encode()


async def test_answers_with_the_wrong_noise_or_implausible_values_are_invalid(
    tmp_path: Path,
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"noise_sd": 1e300}, "wrong_noise"),
        ({"noise_sd": 0.0}, "wrong_noise"),
        ({"scale": 0.5, "noise_sd": 0.5}, "wrong_noise"),
        ({"mechanism": "laplace"}, "wrong_noise"),
        ({"mechanism": None, "noise_sd": 0.0}, "wrong_noise"),
        ({"sensitivity_l2": 0.001}, "wrong_noise"),
        ({"values": lambda _v: 2**53 - 1}, "implausible_value"),
        ({"values": lambda _v: -(10**12)}, "implausible_value"),
        # 2**53 itself cannot even be signed; the JSON gate refuses it in any message.
        ({"noise_sd": "NaN"}, "malformed_answer"),
    ]
    async with federation(
        tmp_path, [visits(3)] * (len(cases) + 1), start_nodes=lambda _i: False
    ) as fed:
        honest = hand_node(fed, len(cases))
        created = await fed.ask(**question(quorum=1))
        for i, (change, reason) in enumerate(cases):
            node = hand_node(fed, i)
            [task] = await node.tasks()
            response = await node.post(task_id(task), _forged(node, task, **change))
            body = assert_problem(response, 422, "answer_mismatch")
            assert body["detail"] == f"recorded as invalid: {reason}", change
        [task] = await honest.tasks()
        assert (await honest.post(task_id(task), honest.answer(task))).status_code == 200
        result = await fed.wait(created.round_id)
        assert result.state is RoundState.CLOSED and result.quorum_met
        assert result.coverage.invalid == len(cases) and result.coverage.answered == 1
        for i, (_change, reason) in enumerate(cases):
            assert outcome(result, node_id(fed, i)).reason == reason
        # The merged figure is the honest node's alone (noisy), with its own noise.
        [visits_estimate] = result.measures
        assert visits_estimate.standard_errors[0] < 100


async def test_a_bad_answer_already_in_the_database_is_shown_as_invalid(
    tmp_path: Path, db_url: str
) -> None:
    """An answer stored before these checks existed (or edited in the database) must not break
    reading the round: it shows as an invalid node, never as a 500."""
    async with federation(
        tmp_path,
        [visits(3), visits(4), visits(5)],
        agg_db_url=db_url,
        start_nodes=lambda _i: False,
        **EXACT,
    ) as fed:
        nodes = [hand_node(fed, i) for i in range(3)]
        created = await fed.ask(**question(quorum=1))
        tasks = [(await node.tasks())[0] for node in nodes]
        for node, task in zip(nodes, tasks, strict=True):
            assert (await node.post(task_id(task), node.answer(task))).status_code == 200
        stored = {
            task_id(tasks[0]): _forged(nodes[0], tasks[0], noise_sd=1e300, mechanism="gaussian"),
            task_id(tasks[1]): b'{"payload": {"measures": "not a list"}}',
        }
        async with fed.app.state.aggregator.factory() as session, session.begin():
            for tid, body in stored.items():
                task = await session.get(Task, tid)
                assert task is not None
                task.body = body
        response = await fed.client.get(
            f"/v1/rounds/{created.round_id}", headers=fed.as_(fed.analyst)
        )
        assert response.status_code == 200, response.text
        result = RoundResult.model_validate(response.json())
        assert outcome(result, nodes[0].node_id) == NodeOutcome(
            node_id=nodes[0].node_id,
            institution="Instelling 0",
            status=NodeStatus.INVALID,
            reason="wrong_noise",
        )
        assert outcome(result, nodes[1].node_id).reason == "malformed_answer"
        assert result.coverage.invalid == 2 and result.coverage.answered == 1
        assert result.quorum_met and theatre(result) == 5


async def test_a_budget_report_stored_by_an_older_version_cannot_break_reads(
    tmp_path: Path, db_url: str
) -> None:
    """Older versions accepted a negative or absurd spend; such a stored report now counts as
    no report at all, and listing nodes or asking a question still works."""
    async with federation(
        tmp_path, [visits(3)], agg_db_url=db_url, start_nodes=lambda _i: False, **EXACT
    ) as fed:
        node = hand_node(fed, 0)
        assert (await node.poll()).status_code == 200
        report = node_report().model_dump(mode="json")
        report["budget"]["spent_rho"] = -0.5
        async with fed.app.state.aggregator.factory() as session, session.begin():
            row = await session.get(Node, node.node_id)
            assert row is not None and row.report is not None
            row.report = json.dumps(report)
        listed = await fed.client.get("/v1/nodes", headers=fed.as_(fed.analyst))
        assert listed.status_code == 200, listed.text
        assert [n["budget"] for n in listed.json()] == [None]
        created = await fed.ask(**question())
        [task] = await node.tasks()
        assert (await node.post(task_id(task), node.answer(task))).status_code == 200
        assert theatre(await fed.wait(created.round_id)) == 3
