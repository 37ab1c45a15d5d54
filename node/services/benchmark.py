""" "My institution against the sector": the node's own exact figures next to the latest published
sector release, for the same breakdowns.

The release is fetched from the aggregator this node joined and its signature checked against the
aggregator key the node trusts. The node's own figures are computed here with the same query
definition as the release table (measure, breakdown, period, contribution bounds) but without
noise, and they never leave the node: nothing is sent, nothing is charged to the budget, and
nothing is logged beyond the page view.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
from sqlalchemy.orm import Session

from node.link import AggregatorLink
from node.services.aggregate import run_aggregate
from protocol.api import ReleaseChain
from protocol.query import Bounds, Measure, Period, Privacy, QuerySpec
from protocol.signing import Envelope, SignatureError, public_key_from_text, verify_once

RELEASE = "RELEASE"  # the envelope type of a signed release (aggregator/releases/document.py)
CACHE_SECONDS = 300.0


class BenchmarkUnavailable(Exception):
    """No release could be fetched or trusted; the message says why (no secrets in it)."""


@dataclass(frozen=True, slots=True)
class Row:
    codes: tuple[str, ...]
    labels: dict[str, str]
    ours: float | None  # revenue in euros, like the release
    sector: float | None  # None when the release suppressed the cell


@dataclass(slots=True)
class TableComparison:
    table_id: str
    title: dict[str, str]
    measure: str
    group_by: tuple[str, ...]
    rows: list[Row] = field(default_factory=list)
    our_total: float | None = None
    sector_total: float | None = None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Release:
    slug: str
    published: str
    document: dict[str, Any]


class ReleaseSource:
    """Fetches and caches the latest release from the aggregator (five minutes)."""

    def __init__(
        self, client: httpx.Client | None = None, verify: ssl.SSLContext | bool = True
    ) -> None:
        self._client = client
        self._verify = verify
        self._lock = threading.Lock()
        self._cached: tuple[float, str, Release] | None = None

    def latest(self, link: AggregatorLink) -> Release:
        with self._lock:
            if self._cached is not None:
                at, base, release = self._cached
                if base == link.base and time.monotonic() - at < CACHE_SECONDS:
                    return release
        release = self._fetch(link)
        with self._lock:
            self._cached = (time.monotonic(), link.base, release)
        return release

    def _fetch(self, link: AggregatorLink) -> Release:
        client = self._client or httpx.Client(timeout=10.0, verify=self._verify)
        try:
            index = client.get(f"{link.base}/v1/releases")
            if index.status_code != 200:
                raise BenchmarkUnavailable(f"the aggregator answered HTTP {index.status_code}")
            chain = ReleaseChain.model_validate_json(index.content)
            if not chain.releases:
                raise BenchmarkUnavailable("nothing has been published yet")
            entry = max(chain.releases, key=lambda e: e.sequence)
            sealed = client.get(f"{link.base}{entry.json_path}")
            if sealed.status_code != 200:
                raise BenchmarkUnavailable(f"the release answered HTTP {sealed.status_code}")
            envelope = Envelope.model_validate_json(sealed.content)
            payload = verify_once(envelope, RELEASE, public_key_from_text(link.aggregator_key))
        except httpx.HTTPError as exc:
            raise BenchmarkUnavailable(
                f"the aggregator is unreachable ({type(exc).__name__})"
            ) from None
        except SignatureError:
            raise BenchmarkUnavailable(
                "the release is not signed by the aggregator key this node trusts"
            ) from None
        except ValueError:
            raise BenchmarkUnavailable("the aggregator's answer is not a release") from None
        finally:
            if self._client is None:
                client.close()
        return Release(
            slug=entry.slug, published=str(payload.get("published_at", "")), document=payload
        )


def compare(session: Session, release: Release) -> list[TableComparison]:
    document = release.document
    method = document.get("methodology", {})
    try:
        period = Period(
            start=date.fromisoformat(method["period_start"]),
            end=date.fromisoformat(method["period_end"]),
        )
    except (KeyError, ValueError):
        return []
    tables = []
    for table in document.get("tables", []):
        tables.append(_compare_table(session, table, period))
    return tables


def _compare_table(session: Session, table: dict[str, Any], period: Period) -> TableComparison:
    group_by = tuple(table.get("group_by", ()))
    comparison = TableComparison(
        table_id=str(table.get("table_id", "")),
        title=dict(table.get("title", {})),
        measure=str(table.get("measure", "")),
        group_by=group_by,
    )
    cells = table.get("cells", [])
    try:
        measure = Measure(comparison.measure)
        domains = {
            name: tuple(dict.fromkeys(tuple(c["codes"])[i] for c in cells))
            for i, name in enumerate(group_by)
        }
        spec = QuerySpec(
            period=period,
            group_by=group_by,
            domains=domains,
            measures=(measure,),
            bounds=Bounds(**table.get("bounds", {})),
            privacy=Privacy(rho=0.01),  # required by the spec; nothing is released or charged
        )
        exact = run_aggregate(session, spec)[measure]
    except (ValueError, KeyError, TypeError) as exc:
        comparison.problem = str(exc).splitlines()[0][:200]
        return comparison
    scale = 0.01 if measure is Measure.REVENUE else 1  # cents → euros, as the release has them
    ours = {tuple(cell): value * scale for cell, value in zip(spec.cells(), exact, strict=True)}
    for cell in cells:
        codes = tuple(cell["codes"])
        comparison.rows.append(
            Row(
                codes=codes,
                labels=dict(cell.get("labels", {})),
                ours=ours.get(codes),
                sector=cell.get("value"),
            )
        )
    comparison.our_total = sum(v for v in ours.values())
    total = table.get("total") or {}
    comparison.sector_total = total.get("value")
    return comparison
