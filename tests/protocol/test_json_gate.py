"""The JSON gate (protocol.http.parse_json): what JSON allows but the protocol cannot handle.

``HOSTILE_BODIES`` is shared with the services' attack tests, which send each body to every
endpoint that takes one and expect these problem codes, never a 500.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from protocol.http import (
    JSON_NUMBER_INVALID,
    JSON_STRING_INVALID,
    JSON_TOO_DEEP,
    MAX_JSON_DEPTH,
    MAX_SAFE_INTEGER,
    JsonRejected,
    parse_json,
)


def _nested(depth: int, inner: str = "1") -> bytes:
    return ("[" * depth + inner + "]" * depth).encode()


# body → the problem code every service answers it with
HOSTILE_BODIES: dict[bytes, str] = {
    _nested(1000): JSON_TOO_DEEP,
    b'{"a":' * 1000 + b"1" + b"}" * 1000: JSON_TOO_DEEP,
    _nested(MAX_JSON_DEPTH + 1): JSON_TOO_DEEP,
    b'{"type": "poll", "payload": {"x": NaN}}': JSON_NUMBER_INVALID,
    b'{"type": "poll", "payload": {"x": Infinity}}': JSON_NUMBER_INVALID,
    b'{"type": "poll", "payload": {"x": -Infinity}}': JSON_NUMBER_INVALID,
    b'{"type": "poll", "payload": {"x": 1e400}}': JSON_NUMBER_INVALID,
    b'{"type": "poll", "payload": {"x": -1e400}}': JSON_NUMBER_INVALID,
    b'{"type": "poll", "payload": {"x": 9007199254740992}}': JSON_NUMBER_INVALID,
    b'{"type": "poll", "payload": {"x": -9007199254740992}}': JSON_NUMBER_INVALID,
    b'{"type": "poll", "payload": {"x": ' + b"9" * 5000 + b"}}": JSON_NUMBER_INVALID,
    b'{"type": "poll", "payload": {"x": "a\\u0000b"}}': JSON_STRING_INVALID,
    b'{"type": "poll", "payload": {"a\\u0000b": 1}}': JSON_STRING_INVALID,
    b'{"type": "poll", "payload": {"x": "\\ud800"}}': JSON_STRING_INVALID,
}


@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=lambda b: b[:40].decode(errors="replace"))
def test_hostile_json_is_rejected_with_its_code(body: bytes) -> None:
    with pytest.raises(JsonRejected) as info:
        parse_json(body)
    assert info.value.code == HOSTILE_BODIES[body]


@pytest.mark.parametrize(
    "document",
    [
        {"x": MAX_SAFE_INTEGER, "y": -MAX_SAFE_INTEGER},
        {"x": 1e300, "y": -1e-300, "z": 0.5},
        {"x": "é ☃ 𝄞", "y": "\\u0000 as text is fine"},
        json.loads(_nested(MAX_JSON_DEPTH - 1)),
        [],
        "just a string",
    ],
)
def test_ordinary_json_passes_unchanged(document: Any) -> None:
    assert parse_json(json.dumps(document).encode()) == document
    assert parse_json(json.dumps(document, ensure_ascii=False)) == document


def test_text_that_is_not_json_raises_a_value_error_not_a_rejection() -> None:
    for garbage in (b"{not json", b"\xff\xfe", b""):
        with pytest.raises(ValueError) as info:
            parse_json(garbage)
        assert not isinstance(info.value, JsonRejected)


@pytest.mark.parametrize(
    "body",
    [
        b'{"x": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 bytes, no escape
        '{"x": "\ud800"}',  # a surrogate in a str body
        b'{"x": "a\\\\\\u0000"}',  # an escaped backslash before the escape
    ],
)
def test_strings_are_checked_in_bodies_that_are_not_plain_ascii(body: bytes | str) -> None:
    with pytest.raises(JsonRejected) as info:
        parse_json(body)
    assert info.value.code == JSON_STRING_INVALID


def test_a_plain_body_with_many_brackets_is_still_walked_for_depth() -> None:
    """Brackets inside strings count towards the quick bound; the walk decides."""
    shallow = {"x": "[" * (MAX_JSON_DEPTH + 5), "y": [[1]]}
    assert parse_json(json.dumps(shallow).encode()) == shallow
    deep = b'{"x": "' + b"{" * 10 + b'", "y": ' + _nested(MAX_JSON_DEPTH) + b"}"
    with pytest.raises(JsonRejected) as info:
        parse_json(deep)
    assert info.value.code == JSON_TOO_DEEP
