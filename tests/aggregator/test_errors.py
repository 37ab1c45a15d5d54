"""The aggregator's error catalogue, and what its error responses never contain.

The catalogue covers every code with a 4xx/5xx status and a finished public message. Over HTTP,
every response of a federation driven through many failures passes a leak check: no API token,
no invite code, no file path and no traceback ever leaves the aggregator.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from aggregator.api.signed import SIGNATURE_CODES
from aggregator.errors import CATALOGUE, AggregatorError, ErrorCode, problem
from protocol.http import PROBLEM_JSON, PROBLEM_TYPE_BASE
from protocol.messages import JOIN, JoinRequest
from protocol.signing import SignatureError, SigningKey, public_key_to_text, sign
from tests.factories import Row
from tests.fedkit import Federation, assert_problem, federation, poll_body

pytestmark = pytest.mark.anyio

PLACEHOLDERS = re.compile(r"\{|\}|%[sdr(]|<[a-z_]+>|\bTODO\b|\bXXX\b|\bFIXME\b")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- the catalogue ------------------------------------------------------------------------------


def test_catalogue_covers_every_code() -> None:
    assert set(CATALOGUE) == set(ErrorCode)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_status_and_title(code: ErrorCode) -> None:
    info = CATALOGUE[code]
    assert 400 <= info.status <= 599
    assert info.title.strip() == info.title and info.title.endswith(".")
    assert not PLACEHOLDERS.search(info.title), info.title
    assert not any(ch.isdigit() for ch in info.title), "public titles carry no numbers"


def test_only_internal_error_and_not_ready_are_server_errors() -> None:
    """A 5xx is either a bug (internal_error) or the readiness probe saying "not yet"."""
    server = {c for c, info in CATALOGUE.items() if info.status >= 500}
    assert server == {ErrorCode.INTERNAL, ErrorCode.NOT_READY}


def test_titles_are_distinct() -> None:
    titles = [info.title for info in CATALOGUE.values()]
    assert len(set(titles)) == len(titles)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_problem_document(code: ErrorCode) -> None:
    body = problem(code)
    assert body == {
        "type": PROBLEM_TYPE_BASE + code.value,
        "title": CATALOGUE[code].title,
        "status": CATALOGUE[code].status,
        "code": code.value,
    }
    assert json.loads(json.dumps(body)) == body


def test_problem_with_detail_and_extension_members() -> None:
    body = problem(ErrorCode.WOULD_BE_REFUSED, "2 of 3 nodes would refuse", nodes=[])
    assert body["detail"] == "2 of 3 nodes would refuse" and body["nodes"] == []
    error = AggregatorError(ErrorCode.ENROL_LOCKED, retry_after_seconds=60)
    assert str(error) == CATALOGUE[ErrorCode.ENROL_LOCKED].title and error.detail is None
    assert error.extra == {"retry_after_seconds": 60}


def test_every_signature_error_has_its_own_code() -> None:
    classes = set(SignatureError.__subclasses__())
    assert set(SIGNATURE_CODES) == classes
    for cls, code in SIGNATURE_CODES.items():
        assert code.value == cls.code


# -- nothing leaks ------------------------------------------------------------------------------


def leak_check(
    fed: Federation, secrets: list[str], seen: set[str]
) -> Callable[[httpx.Response], Awaitable[None]]:
    """A response hook: no secret, path or traceback in any response; errors are problems."""
    paths = [str(fed.settings.home), str(fed.settings.home.resolve())]
    paths += [str(node.home) for node in fed.nodes]
    key_pem = fed.settings.signing_key_path.read_text("ascii")
    key_lines = [line for line in key_pem.splitlines() if "-----" not in line]
    fixed = ["Traceback", 'File "', "site-packages", '.py"', *paths, *key_lines]

    async def check_clean(response: httpx.Response) -> None:
        text = (await response.aread()).decode("utf-8", errors="replace")
        headers = " ".join(response.headers.values())
        request = response.request
        sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        for item in [*fixed, *secrets]:
            assert item not in text, f"{request.method} {request.url} leaks {item[:12]!r}"
            assert item not in headers, f"{request.method} {request.url} leaks {item[:12]!r}"
        if len(sent) >= 8:
            assert sent not in text and sent not in headers, f"{request.url} echoes the token"
        if response.status_code >= 400:
            assert response.headers["content-type"] == PROBLEM_JSON, text
            body = json.loads(text)
            assert {"type", "title", "status", "code"} <= set(body)
            seen.add(body["code"])

    return check_clean


@pytest.fixture
async def fed(tmp_path: Path) -> AsyncIterator[Federation]:
    rows = [Row(person=p, event_date=date(2025, 3, p)) for p in range(1, 4)]
    async with federation(
        tmp_path,
        [rows],
        agg_settings={"max_body_bytes": 4096, "enrol_max_failures": 3},
    ) as fed:
        yield fed


async def test_error_responses_leak_nothing(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    codes = [await fed.invite("Schouwburg") for _ in range(2)]
    secrets = [fed.admin, fed.analyst, *codes, *(c.replace("-", "") for c in codes)]
    seen: set[str] = set()
    fed.client.event_hooks["response"] = [leak_check(fed, secrets, seen)]
    client, admin, analyst = fed.client, fed.as_(fed.admin), fed.as_(fed.analyst)

    # Tokens: a near miss, the wrong scheme, over-long, the wrong role.
    near_miss = fed.admin[:-2] + ("xy" if fed.admin[-2:] != "xy" else "yz")
    for authorization in (f"Bearer {near_miss}", f"Basic {fed.admin}", f"Bearer pd_{'a' * 250}"):
        response = await client.get("/v1/nodes", headers={"authorization": authorization})
        assert_problem(response, 401, "not_authenticated")
    assert_problem(
        await client.post("/v1/admin/invites", json={}, headers=analyst), 403, "forbidden"
    )

    # Enrolment with wrong codes (echoing nothing of them), then the lockout.
    key = SigningKey.generate()

    async def enrol(code: str) -> httpx.Response:
        join = JoinRequest(invite=code, institution="X", public_key=public_key_to_text(key.public))
        envelope = sign(JOIN, join.model_dump(mode="json"), key)
        return await client.post("/v1/enrol", content=envelope.model_dump_json())

    guesses = [
        codes[0][:-1] + ("0" if codes[0][-1] != "0" else "1"),
        "GUESS-GUESS-GUESS-12345",
        codes[1].lower()[::-1],
    ]
    secrets += guesses  # the hook reads this list: a guess is not echoed either
    for guess in guesses:
        assert_problem(await enrol(guess), 403, "invite_invalid")
    assert_problem(await enrol(codes[0]), 429, "enrol_locked")

    # Requests that do not parse, or ask for things that are not there.
    title = f"see {fed.settings.home} for {fed.admin}"
    bad_spec = {"spec": {"title": title, "period": {"start": "x"}, "privacy": {}}}
    assert_problem(
        await client.post("/v1/rounds", json=bad_spec, headers=analyst), 422, "invalid_request"
    )
    report = {"report": {"name": "../../etc/passwd"}}
    assert_problem(
        await client.post("/v1/rounds", json=report, headers=analyst), 422, "invalid_query"
    )
    response = await client.post("/v1/rounds", content=b"{oops", headers=analyst)
    assert_problem(response, 422, "invalid_request")
    response = await client.get(f"/v1/rounds/{fed.settings.home}", headers=analyst)
    assert_problem(response, 404, "not_found")
    assert_problem(await client.get("/v1/rounds/nope", headers=analyst), 404, "round_not_found")
    assert_problem(await client.get("/v1/nothing"), 404, "not_found")
    assert_problem(await client.put("/v1/health"), 405, "method_not_allowed")
    assert_problem(await client.post("/v1/node/poll", content=b"x" * 5000), 413, "body_too_large")
    response = await client.post("/v1/node/tasks/x/result", content=json.dumps({"a": title}))
    assert_problem(response, 422, "invalid_request")
    response = await client.post("/v1/node/poll", content=b"\xff" + str(fed.settings.home).encode())
    assert_problem(response, 400, "malformed_json")
    response = await client.delete("/v1/admin/nodes/nobody", headers=admin)
    assert_problem(response, 404, "unknown_node")

    # A node key that is not enrolled.
    response = await client.post("/v1/node/poll", content=poll_body(fed, SigningKey.generate()))
    assert_problem(response, 401, "unknown_key")

    # An unexpected failure deep inside: a bare 500, whatever the exception said.
    async def explode(*_args: Any) -> Any:
        raise RuntimeError(f"database {fed.settings.home} broke; token {fed.admin}")

    monkeypatch.setattr(fed.app.state.aggregator.rounds, "recent", explode)
    body = assert_problem(await client.get("/v1/rounds", headers=analyst), 500, "internal_error")
    assert "broke" not in json.dumps(body)

    # Creating an invite shows its (new) code to the admin, once, and nothing else.
    response = await client.post("/v1/admin/invites", json={"institution": "Y"}, headers=admin)
    assert response.status_code == 201
    assert seen >= {
        "not_authenticated",
        "forbidden",
        "invite_invalid",
        "enrol_locked",
        "invalid_request",
        "invalid_query",
        "not_found",
        "round_not_found",
        "method_not_allowed",
        "body_too_large",
        "malformed_json",
        "unknown_node",
        "unknown_key",
        "internal_error",
    }
