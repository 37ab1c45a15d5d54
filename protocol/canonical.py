"""Canonical bytes: the one function that turns a message into the bytes that are signed or hashed.

We use the JSON Canonicalization Scheme (RFC 8785), so that any implementation in any language can
reproduce the exact bytes. The ``rfc8785`` package is the reference; it is pure Python (about
0.2–0.5 ms for a task or an answer). Most documents we sign take a fast path through the standard
library's C encoder (``json.dumps`` with sorted keys, no whitespace, raw UTF-8), which yields the
same bytes as RFC 8785 for the documents :func:`_fast` admits:

* strings: both escape exactly ``"``, ``\\``, ``\\b \\f \\n \\r \\t`` by name and the other
  controls below U+0020 as ``\\u00xx`` (lower-case hex), and write everything else as UTF-8; a
  lone surrogate cannot be encoded, and then the reference raises its error;
* integers within ±(2**53 − 1) (the reference refuses the rest) print the same;
* floats: integral ones below 2**53 in magnitude are written as that integer (ECMAScript prints
  ``1.0`` as ``1`` and ``-0.0`` as ``0``); fractional ones in [1e-4, 1e16) as Python's ``repr``,
  since both languages give the shortest round-trip digits there and neither uses an exponent
  (Python switches below 1e-4 and from 1e16, ECMAScript below 1e-6 and from 1e21); every other
  float becomes a placeholder string that is replaced by the reference's text for that number
  (and if the placeholder's text occurs anywhere else, the whole document goes to the
  reference);
* object keys that are strings without a code point from U+D800 up: then ordering by code points
  (Python's sort) equals ordering by UTF-16 code units (RFC 8785 §3.2.3), which differ only
  between U+E000–U+FFFF and characters beyond the BMP.

Anything else (other types, subclasses, integers or keys outside those ranges) goes to the
reference as a whole. ``tests/protocol/test_canonical.py`` checks the result against the reference
on generated documents; the RFC's vectors in ``tests/protocol/test_signing.py`` run through both.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

_INT_LIMIT = 2**53 - 1
_FLOAT_LOW = 1e-4
_FLOAT_HIGH = 1e16
_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode


class _Slow(Exception):
    """The document needs the reference implementation."""


def _prepared(value: Any, floats: list[float]) -> Any:
    """A copy of ``value`` whose standard-library encoding is its RFC 8785 form, once each
    placeholder ``"\\u0000<i>\\u0000"`` is replaced by the canonical text of ``floats[i]``."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -_INT_LIMIT <= value <= _INT_LIMIT:
            return value
        raise _Slow
    if kind is float:
        size = abs(value)
        if value.is_integer():
            if size <= _INT_LIMIT:
                return int(value)  # ECMAScript prints these as the integer; -0.0 as 0
        elif _FLOAT_LOW <= size < _FLOAT_HIGH:
            return value  # fractional, no exponent in either language
        floats.append(value)
        return f"\x00{len(floats) - 1}\x00"
    if kind is dict:
        copy = {}
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or max(key) < "\ud800"):
                raise _Slow
            copy[key] = _prepared(item, floats)
        return copy
    if kind is list or kind is tuple:
        return [_prepared(item, floats) for item in value]
    raise _Slow


def _standard(document: Any) -> str:
    floats: list[float] = []
    text = _encode(_prepared(document, floats))
    for index, number in enumerate(floats):
        placeholder = f'"\\u0000{index}\\u0000"'
        if text.count(placeholder) != 1:
            raise _Slow  # a string of the document looks like a placeholder
        text = text.replace(placeholder, rfc8785.dumps(number).decode("ascii"))
    return text


def canonical_bytes(document: Any) -> bytes:
    """RFC 8785 bytes of a JSON-compatible document (dicts, lists, str, int, float, bool, None)."""
    try:
        return _standard(document).encode("utf-8")
    except (_Slow, UnicodeEncodeError):
        pass  # the reference decides, and raises its error for what has no canonical form
    return bytes(rfc8785.dumps(document))


def reference_bytes(document: Any) -> bytes:
    """The reference implementation alone (for tests and benchmarks)."""
    return bytes(rfc8785.dumps(document))
