"""The one error the reach mathematics raises on bad input."""

from __future__ import annotations


class ReachInputError(ValueError):
    """A reach input is malformed: a wrong vector length or type, a bad seed, a duplicate
    pseudonym, a value outside its domain. The message says which, and never echoes data."""
