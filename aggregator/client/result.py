"""A round's result as the Python client returns it: typed accessors, rows, data frames."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from aggregator.client.errors import NoEstimates
from aggregator.merge import shares as merged_shares
from protocol.catalogue import DIMENSIONS
from protocol.figures import sector_label
from protocol.query import Measure, QuerySpec
from protocol.results import Coverage, MeasureEstimate, RatioEstimate, RoundResult, RoundState

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

    Cells follow the spec's canonical order. Revenue and ``mean_price`` are in cents."""

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
        ratio and (with ``shares_along``) share the estimate and ``_se``, ``_lower``, ``_upper``."""
        self._require()
        columns: dict[str, list[Any]] = {}
        for position, name in enumerate(self.raw.group_by):
            codes = [cell[position] for cell in self.raw.cells]
            columns[name] = codes
            columns[f"{name}_label"] = [DIMENSIONS[name].label(code, lang) for code in codes]
        series: list[tuple[str, Estimate]] = [(m.measure.value, m) for m in self.raw.measures]
        series += [(r.name, r) for r in self.raw.ratios]
        if shares_along is not None:
            for m in self.raw.measures:
                share = self.shares(m.measure, shares_along)
                series.append((share.name, share))
        for name, estimate in series:
            columns[name] = list(estimate.estimates)
            columns[f"{name}_se"] = list(estimate.standard_errors)
            columns[f"{name}_lower"] = list(estimate.lower)
            columns[f"{name}_upper"] = list(estimate.upper)
        return columns

    def rows(self, lang: str = "nl", *, shares_along: str | None = None) -> list[dict[str, Any]]:
        """One dict per cell, with the keys of ``columns()``."""
        columns = self.columns(lang, shares_along=shares_along)
        return [
            dict(zip(columns, values, strict=True))
            for values in zip(*columns.values(), strict=True)
        ]

    def to_pandas(self, lang: str = "nl", *, shares_along: str | None = None) -> pandas.DataFrame:
        frame: pandas.DataFrame = _optional("pandas").DataFrame(
            self.columns(lang, shares_along=shares_along)
        )
        return frame

    def to_polars(self, lang: str = "nl", *, shares_along: str | None = None) -> polars.DataFrame:
        frame: polars.DataFrame = _optional("polars").DataFrame(
            self.columns(lang, shares_along=shares_along)
        )
        return frame

    def to_json(self) -> str:
        """The RoundResult as the aggregator sent it (``RoundResult.model_validate_json`` reads
        it back)."""
        return self.raw.model_dump_json(indent=2)
