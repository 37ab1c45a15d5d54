"""Canonical bytes: the one function that turns a message into the bytes that are signed or hashed.

We use the JSON Canonicalization Scheme (RFC 8785) through the ``rfc8785`` package, so that any
implementation in any language can reproduce the exact bytes.
"""

from __future__ import annotations

from typing import Any

import rfc8785


def canonical_bytes(document: Any) -> bytes:
    """RFC 8785 bytes of a JSON-compatible document (dicts, lists, str, int, float, bool, None)."""
    return bytes(rfc8785.dumps(document))
