"""A Python client for the aggregator's analyst API, for notebooks and scripts.

    from aggregator.client import Client

    with Client("https://aggregator.example.nl", token) as client:
        result = client.ask(report="revenue", year=2025, rho=0.25)
        frame = result.to_polars()

``Client`` is synchronous; ``AsyncClient`` has the same methods, to ``await`` (clients.py). Both
share one sans-I/O core (flows.py): each method is a *flow*, a generator that yields the HTTP
calls it needs and is sent their responses. Building requests, long-polling a round and reading
responses therefore exist once; the two classes differ only in how they send a call.

The client depends on ``protocol`` only, never on the aggregator's own modules, so that an
analyst can install and run it without the service (tests/aggregator/test_client_imports.py).

A result's ``rows()`` and data frames show figures as people should read them (never below 0,
money in euros, flagged when too wide to be useful, the raw estimate and the coverage beside
them); ``raw``, ``measure()`` and ``ratio()`` are the wire format (raw estimates, cents). A
closed result with figures from only some of the nodes asked comes with a
``PartialResultWarning``.

Every error is a ``ClientError``: a problem document from the aggregator (with its ``code``,
``status`` and ``detail``), no answer at all, or an answer this client cannot read. With no
answer at all, ``Unreachable`` says what is likely wrong (host not found, connection refused,
TLS against plain HTTP, a wrong port). A read whose kept-alive connection was closed under it
is sent again on a fresh connection, up to twice, before the aggregator counts as unreachable.
"""

from __future__ import annotations

from aggregator.client.clients import (
    DEFAULT_TIMEOUT,
    RETRIES,
    TOKEN_ENV,
    URL_ENV,
    AsyncClient,
    Client,
)
from aggregator.client.errors import (
    ClientError,
    Forbidden,
    InvalidQuery,
    NoEstimates,
    NotAuthenticated,
    NotConfigured,
    NotFound,
    RefusingNode,
    UnexpectedResponse,
    Unreachable,
    WouldBeRefused,
)
from aggregator.client.flows import POLL_SECONDS, AskOptions, Progress
from aggregator.client.result import PartialResultWarning, ReportInfo, Result
from protocol.preview import MeasurePreview, NodePreview, RoundPreview

__all__ = [
    "DEFAULT_TIMEOUT",
    "POLL_SECONDS",
    "RETRIES",
    "TOKEN_ENV",
    "URL_ENV",
    "AskOptions",
    "AsyncClient",
    "Client",
    "ClientError",
    "Forbidden",
    "InvalidQuery",
    "MeasurePreview",
    "NoEstimates",
    "NodePreview",
    "NotAuthenticated",
    "NotConfigured",
    "NotFound",
    "PartialResultWarning",
    "Progress",
    "RefusingNode",
    "ReportInfo",
    "Result",
    "RoundPreview",
    "UnexpectedResponse",
    "Unreachable",
    "WouldBeRefused",
]
