"""A round's result as the Python client returns it: typed accessors, rows, data frames."""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from aggregator.client.errors import NoEstimates
from aggregator.client.presentation import present
from protocol.catalogue import DIMENSIONS
from protocol.figures import sector_label
from protocol.query import Measure, QuerySpec
from protocol.ratios import shares as merged_shares
from protocol.results import (
    Coverage,
    MeasureEstimate,
    NodeStatus,
    RatioEstimate,
    RoundResult,
    RoundState,
)

if TYPE_CHECKING:
    import pandas  # type: ignore[import-not-found, import-untyped, unused-ignore]
    import polars


class ReportInfo(BaseModel):
    """A standard report template, as GET /v1/reports describes it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    title: dict[str, str]
    group_by: tuple[str, ...]
    measures: tuple[str, ...]
    bounds: dict[str, int]
    needs_domain: str | None = None


Estimate = MeasureEstimate | RatioEstimate


class PartialResultWarning(UserWarning):
    """A round closed with figures, but not every node asked answered: the figures cover only
    the institutions that answered (``Result.coverage`` says who is missing). The client warns
    with it whenever ``ask``, ``wait`` or ``round`` returns such a result; silence it with
    ``warnings.simplefilter("ignore", PartialResultWarning)``."""


def warn_if_partial(result: Result, stacklevel: int) -> None:
    """Warn with ``PartialResultWarning`` when ``result`` is partial and has figures."""
    if not (result.closed and result.partial and result.has_estimates):
        return
    c = result.coverage
    missing = ", ".join(n.institution for n in c.nodes if n.status is not NodeStatus.ANSWERED)
    warnings.warn(
        f"partial result: round {result.round_id} has figures of {c.answered} of {c.total} "
        f"institutions; not in them: {missing}",
        PartialResultWarning,
        stacklevel=stacklevel + 1,
    )


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"Result.to_{module}() needs {module}, which is not installed; "
            f"install it with: pip install {module}"
        ) from None


@dataclass(frozen=True, repr=False)
class Result:
    """A round's result (``raw``, the aggregator's RoundResult) with typed accessors.

    Cells follow the spec's canonical order. ``raw``, ``measure()``, ``ratio()`` and
    ``to_json()`` are the wire format: raw noisy estimates, revenue and ``mean_price`` in cents.
    ``rows()``, ``columns()`` and the data frames are for people: never negative, in euros
    (``revenue_eur``, ``mean_price_eur``), with the raw estimate, a ``_too_wide`` flag and the
    coverage beside them (see aggregator.client.presentation)."""

    raw: RoundResult

    def __repr__(self) -> str:
        c = self.coverage
        return (
            f"<Result {self.round_id} {self.raw.state.value}: {c.answered} of {c.total} nodes "
            f"answered, {len(self.raw.cells)} cells, measures "
            f"{[m.measure.value for m in self.raw.measures]}>"
        )

    @property
    def round_id(self) -> str:
        return self.raw.round_id

    @property
    def spec(self) -> QuerySpec:
        return self.raw.spec

    @property
    def closed(self) -> bool:
        return self.raw.state is RoundState.CLOSED

    @property
    def coverage(self) -> Coverage:
        return self.raw.coverage

    @property
    def partial(self) -> bool:
        """Closed with at least one node missing, refused or invalid."""
        return self.raw.partial

    @property
    def quorum_met(self) -> bool:
        return self.raw.quorum_met

    @property
    def has_estimates(self) -> bool:
        return bool(self.raw.measures)

    def _require(self) -> None:
        if self.has_estimates:
            return
        c = self.coverage
        if not self.closed:
            detail = (
                f"round {self.round_id} is still open ({c.total - c.pending} of {c.total} nodes "
                "settled); wait for it with client.wait()"
            )
            raise NoEstimates("round_open", detail)
        detail = (
            f"the quorum was not met: {c.answered} of {c.total} nodes answered and "
            f"{self.raw.quorum} were needed, so there are no estimates"
        )
        raise NoEstimates("quorum_not_met", detail)

    def measure(self, measure: Measure | str) -> MeasureEstimate:
        self._require()
        return self.raw.measure(measure)

    def label(self, measure: Measure | str, lang: str = "nl") -> str:
        """What a measure's figures are, in words (nl or en), for a column header or a chart.

        ``persons`` is "visitors per institution, summed (not deduplicated)": each institution
        counts its own distinct visitors and the round sums those counts, so someone who visits
        three institutions counts three times. Its ``MeasureEstimate`` says the same in
        ``aggregation`` and ``deduplicated``."""
        return sector_label(self.measure(measure).measure, lang)

    def ratio(self, name: str) -> RatioEstimate:
        """A derived quantity, such as ``mean_price`` (revenue per visit)."""
        self._require()
        for estimate in self.raw.ratios:
            if estimate.name == name:
                return estimate
        raise KeyError(name)

    def shares(self, measure: Measure | str, along: str) -> RatioEstimate:
        """Each cell's share of the cells that differ from it only in ``along``."""
        return merged_shares(self.raw.spec, self.measure(measure), along)

    def columns(self, lang: str = "nl", *, shares_along: str | None = None) -> dict[str, list[Any]]:
        """The table by column: per dimension its code and ``<dimension>_label``; per measure,
        ratio and (with ``shares_along``) share its shown value (never negative; money in euros,
        named ``revenue_eur``, ``mean_price_eur``) and ``_se``, ``_lower``, ``_upper`` (the 95%
        interval, clipped at 0), ``_raw`` (the estimate as merged, possibly negative) and
        ``_too_wide`` (the interval is too wide to be useful: the public site would show "."); then
        the coverage, the same in every row: ``coverage_answered``, ``coverage_total`` and
        ``partial``."""
        self._require()
        columns: dict[str, list[Any]] = {}
        for position, name in enumerate(self.raw.group_by):
            codes = [cell[position] for cell in self.raw.cells]
            columns[name] = codes
            columns[f"{name}_label"] = [DIMENSIONS[name].label(code, lang) for code in codes]
        series: list[Estimate] = [*self.raw.measures, *self.raw.ratios]
        if shares_along is not None:
            series += [self.shares(m.measure, shares_along) for m in self.raw.measures]
        for estimate in series:
            shown = present(estimate)
            columns[shown.name] = list(shown.values)
            columns[f"{shown.name}_se"] = list(shown.standard_errors)
            columns[f"{shown.name}_lower"] = list(shown.lower)
            columns[f"{shown.name}_upper"] = list(shown.upper)
            columns[f"{shown.name}_raw"] = list(shown.raw)
            columns[f"{shown.name}_too_wide"] = list(shown.too_wide)
        cells = len(self.raw.cells)
        columns["coverage_answered"] = [self.coverage.answered] * cells
        columns["coverage_total"] = [self.coverage.total] * cells
        columns["partial"] = [self.partial] * cells
        return columns

    def rows(self, lang: str = "nl", *, shares_along: str | None = None) -> list[dict[str, Any]]:
        """One dict per cell, with the keys of ``columns()``."""
        columns = self.columns(lang, shares_along=shares_along)
        return [
            dict(zip(columns, values, strict=True))
            for values in zip(*columns.values(), strict=True)
        ]

    def to_pandas(self, lang: str = "nl", *, shares_along: str | None = None) -> pandas.DataFrame:
        """The columns as a pandas frame; ``frame.attrs`` also holds ``round_id`` and the whole
        ``coverage`` (as JSON-able dicts)."""
        frame: pandas.DataFrame = _optional("pandas").DataFrame(
            self.columns(lang, shares_along=shares_along)
        )
        frame.attrs["round_id"] = self.round_id
        frame.attrs["coverage"] = self.coverage.model_dump(mode="json")
        return frame

    def to_polars(self, lang: str = "nl", *, shares_along: str | None = None) -> polars.DataFrame:
        """The columns as a polars frame (polars frames have no metadata: the coverage is in
        the ``coverage_*`` and ``partial`` columns)."""
        frame: polars.DataFrame = _optional("polars").DataFrame(
            self.columns(lang, shares_along=shares_along)
        )
        return frame

    def to_json(self) -> str:
        """The RoundResult as the aggregator sent it (``RoundResult.model_validate_json`` reads
        it back)."""
        return self.raw.model_dump_json(indent=2)
