"""The fast path of canonical bytes gives exactly the reference RFC 8785 bytes, or defers to it.

The RFC's own vectors are in test_signing.py; they run through ``canonical_bytes`` and so through
both paths (floats with exponents, the UTF-16 key order).
"""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import _prepared, _Slow, canonical_bytes, reference_bytes

# Keys and strings from the whole of Unicode (surrogates excluded: they have no UTF-8 form),
# with a bias towards the characters where the two key orders or the escapes could differ.
_tricky = st.sampled_from(
    ["\x00", "\x1f", "\x7f", '"', "\\", "/", "\u2028", "\ue000", "\uffff", "\U0001f600", "é"]
)
_text = st.lists(st.one_of(st.characters(exclude_categories=["Cs"]), _tricky), max_size=6).map(
    "".join
)
_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1e-4, 9.999e-5, 1e16, 1e16 - 2, 2.0**53, 2.0**53 + 2, 1e-7, 1e21]),
    st.integers(-(2**60), 2**60).map(float),
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53) + 1, 2**53 - 1),
    _floats,
    _text,
    st.just("\x000\x00"),  # looks like the fast path's first placeholder
)
_documents = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(_text, inner, max_size=5)),
    max_leaves=30,
)


@settings(max_examples=600, deadline=None)
@given(_documents)
def test_equals_the_reference_on_generated_documents(document: Any) -> None:
    assert canonical_bytes(document) == reference_bytes(document)


@settings(max_examples=300, deadline=None)
@given(_floats)
def test_every_finite_float_equals_the_reference(value: float) -> None:
    assert canonical_bytes({"x": [value, -value]}) == reference_bytes({"x": [value, -value]})


def test_the_fast_path_takes_typical_messages() -> None:
    """Integral floats, small floats and non-ASCII text stay on the standard-library path."""
    document = {"delta": 1e-7, "cap": 100.0, "eps": 0.5, "name": "Théâtre", "n": [1, -0.0]}
    floats: list[float] = []
    prepared = _prepared(document, floats)
    assert floats == [1e-7]
    assert prepared["cap"] == 100 and type(prepared["cap"]) is int
    assert canonical_bytes(document) == (
        '{"cap":100,"delta":1e-7,"eps":0.5,"n":[1,0],"name":"Théâtre"}'.encode()
    )


@pytest.mark.parametrize(
    "document",
    [
        {"\U0001f600": 1, "\ufb33": 2},  # UTF-16 order differs from code-point order
        {1: "a"},  # not a string key: the reference refuses it
        [2**53],  # beyond the safe integers
        [True, (1, 2), {"a": bytearray(b"x")}],  # a type JSON does not have
    ],
)
def test_what_the_fast_path_leaves_to_the_reference(document: Any) -> None:
    with pytest.raises(_Slow):
        _prepared(document, [])


def test_a_string_like_a_placeholder_sends_the_document_to_the_reference() -> None:
    document = {"a": 1e-7, "b": "\x000\x00", "c": ['"\x000\x00"']}
    assert canonical_bytes(document) == reference_bytes(document)
    assert json.loads(canonical_bytes(document)) == document


@pytest.mark.parametrize(
    "document", [{"a": "\ud800"}, [float("nan")], [float("inf")], {1: 2}, [2**53]]
)
def test_what_has_no_canonical_form_raises_the_reference_error(document: Any) -> None:
    with pytest.raises(rfc8785.CanonicalizationError):
        canonical_bytes(document)


def test_the_smallest_and_largest_doubles() -> None:
    (tiny,) = struct.unpack(">d", bytes.fromhex("0000000000000001"))
    (huge,) = struct.unpack(">d", bytes.fromhex("7fefffffffffffff"))
    assert canonical_bytes([tiny, huge]) == b"[5e-324,1.7976931348623157e+308]"
