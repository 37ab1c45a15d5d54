"""The node's error catalogue covers every code and yields RFC 9457 problem documents."""

from __future__ import annotations

import json

import pytest

from node.errors import CATALOGUE, ErrorCode, NodeError, problem
from protocol.http import PROBLEM_TYPE_BASE
from protocol.signing import (
    BadSignature,
    ReplayedMessage,
    StaleMessage,
    UnknownKey,
    WrongMessageType,
)


def test_catalogue_covers_every_code() -> None:
    assert set(CATALOGUE) == set(ErrorCode)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_status_and_title(code: ErrorCode) -> None:
    info = CATALOGUE[code]
    assert 400 <= info.status <= 599
    assert info.title.strip() and info.title.endswith(".")
    assert not any(ch.isdigit() for ch in info.title), "public titles carry no numbers"


def test_only_internal_error_and_not_ready_are_server_errors() -> None:
    """A 5xx is either a bug (internal_error) or the readiness probe saying "not yet"."""
    server = {c for c, info in CATALOGUE.items() if info.status >= 500}
    assert server == {ErrorCode.INTERNAL, ErrorCode.NOT_READY}


@pytest.mark.parametrize("code", list(ErrorCode))
def test_problem_document(code: ErrorCode) -> None:
    body = problem(code)
    assert body["type"] == PROBLEM_TYPE_BASE + code.value
    assert body["type"].startswith("https://")
    assert body["title"] == CATALOGUE[code].title
    assert body["status"] == CATALOGUE[code].status and isinstance(body["status"], int)
    assert body["code"] == code.value
    assert "detail" not in body
    assert json.loads(json.dumps(body)) == body


def test_problem_with_detail_and_extension_members() -> None:
    body = problem(ErrorCode.INVALID_QUERY, "group_by names a dimension twice", field="group_by")
    assert body["detail"] == "group_by names a dimension twice"
    assert body["field"] == "group_by"
    assert body["status"] == 422


def test_signature_errors_map_onto_catalogue_codes() -> None:
    for cls in (UnknownKey, BadSignature, StaleMessage, ReplayedMessage, WrongMessageType):
        assert ErrorCode(cls.code) in CATALOGUE


def test_node_error() -> None:
    plain = NodeError(ErrorCode.NOT_FOUND)
    assert str(plain) == CATALOGUE[ErrorCode.NOT_FOUND].title and plain.detail is None
    detailed = NodeError(ErrorCode.REFUSED, "budget exhausted", reason="budget_exhausted")
    assert str(detailed) == "budget exhausted"
    assert detailed.code is ErrorCode.REFUSED and detailed.extra == {"reason": "budget_exhausted"}
