"""Metrics and logs shared by the node and the aggregator.

* ``RequestMetrics``: an ASGI middleware that times every HTTP request into a Prometheus histogram
  labelled by method, route template (``/v1/rounds/{round_id}``, never the concrete path, so no
  id ends up in a label) and status class.
* ``render``: the Prometheus text exposition of a request histogram plus a snapshot of gauges and
  counters that the service reads from its database at scrape time (so they survive restarts and
  agree between processes sharing one database).
* ``configure_logging``: plain lines for people, or one JSON object per line
  (``PUBLIEKSDATA_LOG_FORMAT=json``) for a log collector. Log messages never carry personal
  data: the services log reason codes, counts and ids, never identifiers or figures.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LOG_FORMAT_ENV = "PUBLIEKSDATA_LOG_FORMAT"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class RequestMetrics:
    """Time every HTTP request (long polls included: their route tells them apart)."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.histogram.labels(
                method=scope.get("method", ""), route=template, status=f"{status // 100}xx"
            ).observe(time.perf_counter() - started)


def request_histogram(prefix: str) -> tuple[CollectorRegistry, Histogram]:
    """A registry of the service's own (one per app, so in-process tests do not share one)."""
    registry = CollectorRegistry(auto_describe=True)
    histogram = Histogram(
        f"{prefix}_http_request_duration_seconds",
        "HTTP request duration by method, route template and status class.",
        ("method", "route", "status"),
        buckets=BUCKETS,
        registry=registry,
    )
    return registry, histogram


class Snapshot(Collector):
    """Metrics read at scrape time, added as gauges or counters with their label values."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def gauge(
        self, name: str, doc: str, values: dict[tuple[str, ...], float], labels: Sequence[str] = ()
    ) -> None:
        family = GaugeMetricFamily(name, doc, labels=list(labels))
        for key, value in sorted(values.items()):
            family.add_metric(list(key), value)
        self.families.append(family)

    def counter(
        self, name: str, doc: str, values: dict[tuple[str, ...], float], labels: Sequence[str] = ()
    ) -> None:
        family = CounterMetricFamily(name, doc, labels=list(labels))
        for key, value in sorted(values.items()):
            family.add_metric(list(key), value)
        self.families.append(family)

    def collect(self) -> Iterable[Metric]:
        return iter(self.families)


def render(registry: CollectorRegistry, snapshot: Snapshot) -> bytes:
    registry.register(snapshot)
    try:
        return generate_latest(registry)
    finally:
        registry.unregister(snapshot)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            document["error"] = record.exc_info[0].__name__  # the type only, never the text
        return json.dumps(document, ensure_ascii=False)


def configure_logging(level: str) -> None:
    """Plain timestamped lines, or JSON lines with PUBLIEKSDATA_LOG_FORMAT=json; uvicorn's own
    loggers go the same way."""
    handler = logging.StreamHandler()
    if os.environ.get(LOG_FORMAT_ENV, "text").lower() == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


def announce(message: str) -> None:
    """A start-up line for the operator: printed as it is, or (with JSON logs) as a log record,
    so that a log collector sees only JSON lines."""
    if os.environ.get(LOG_FORMAT_ENV, "text").lower() == "json":
        logging.getLogger("publieksdata").info(message)
    else:
        print(message, flush=True)
