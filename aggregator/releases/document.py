"""A release: the sector statistics as published, one immutable signed document.

A release holds tables of post-processed figures with their intervals, the methodology that
produced them, and its place in the release chain. It is stored and served as the aggregator's
signed :class:`~protocol.signing.Envelope` of type ``RELEASE`` around
``ReleaseDocument.model_dump(mode="json")``; its *hash* is SHA-256 over the canonical bytes of
that whole envelope, and the next release names it in ``previous_hash``. So a changed byte in
any release breaks its signature or the next release's link, and a removed release breaks the
chain's ``sequence`` numbering and links (see :mod:`aggregator.releases.chain`).

Every cell of a table carries both the published (post-processed) figure and the interval;
suppressed cells (CBS-style ".") have no figure at all. Nothing here is raw data: every number
comes from a merged, noisy round.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.figures import Aggregation, FillsDeduplicated

SCHEMA: Final = "publieksdata.release/1"
RELEASE = "RELEASE"  # the envelope type of a signed release
RELEASE_KEYS = "RELEASE_KEYS"  # the current key vouching for the aggregator's retired keys


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Text(_Frozen):
    """A text in Dutch and English."""

    nl: Annotated[str, Field(min_length=1, max_length=4000)]
    en: Annotated[str, Field(min_length=1, max_length=4000)]

    def get(self, lang: str) -> str:
        return self.en if lang == "en" else self.nl


class PostProcessing(_Frozen):
    """What was done to the merged figures before publication (never to raw data)."""

    non_negative: bool = True  # negative estimates are published as 0 (intervals clipped at 0)
    rounding: bool = True  # whole numbers by controlled rounding; interval bounds to a power of ten
    consistent_totals: bool = True  # a total row per table: the consistent total of all cells
    # CBS-style "." for cells whose 95% interval half-width exceeds this share of the estimate;
    # None: nothing is suppressed.
    suppress_relative_halfwidth: Annotated[float, Field(gt=0)] | None = None


class Cell(_Frozen):
    """One row of a table: the codes and labels of its cell, and the published figure."""

    codes: tuple[str, ...]
    labels: Text  # the cell's labels joined with " · ", per language
    value: float | None  # the published figure; None when suppressed (".")
    lower: float | None  # the published 95% interval (rounded like the value)
    upper: float | None
    standard_error: float | None
    rounded_to: int | None = None  # the power of ten the value was rounded to (1, 10, 100, …)
    suppressed: bool = False


class TablePrivacy(_Frozen):
    mode: Literal["independent", "secure"]
    mechanism: Literal["gaussian", "laplace"]
    rho: float | None
    epsilon: float  # the (ε, δ)-DP guarantee of this table's round (for ρ: its conversion)
    delta: float
    threshold: int | None = None  # secure rounds: t


class TableCoverage(_Frozen):
    institutions: int  # enrolled and asked
    answered: int  # whose figures are in the table
    missing: tuple[str, ...] = ()  # institutions asked that are not in the figures


class Table(_Frozen, FillsDeduplicated):
    """One measure of one round, by its dimensions, with a total row.

    ``aggregation`` says how the institutions' figures were combined (``sum_over_institutions``
    for every table today) and ``deduplicated`` whether a ``persons`` table counts each person
    once across the sector (false: a person who visits three institutions counts three times;
    null for other measures). Releases made before these fields existed read as summed and not
    deduplicated, which is what they were. See :mod:`protocol.figures`."""

    table_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    title: Text
    round_id: str
    measure: Literal["visits", "persons", "revenue", "mean_price"]
    unit: Text  # e.g. "bezoeken" / "visits", "euro"
    group_by: tuple[str, ...]
    dimension_titles: tuple[Text, ...]  # the titles of the group_by dimensions
    cells: tuple[Cell, ...]
    total: Cell | None  # over all cells (None for means)
    privacy: TablePrivacy
    coverage: TableCoverage
    bounds: dict[str, int]
    aggregation: Aggregation = Aggregation.SUM_OVER_INSTITUTIONS
    deduplicated: bool | None = None


class Methodology(_Frozen):
    rho_total: float | None  # the sum over the release's rounds (zCDP composition)
    epsilon_total: float  # (ε, δ) of the whole release, by composition of its rounds
    delta_total: float
    mechanisms: tuple[str, ...]
    modes: tuple[str, ...]
    confidence: float = 0.95
    catalogue_version: str
    period_start: date
    period_end: date
    institutions: tuple[str, ...]  # the institutions whose figures are in at least one table
    institutions_asked: int
    post_processing: PostProcessing
    privacy_explanation: str  # a link to the plain-language explanation


class ReleaseDocument(_Frozen):
    format: Literal["publieksdata.release/1"] = SCHEMA
    release_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]  # the series
    version: Annotated[int, Field(ge=1)]
    sequence: Annotated[int, Field(ge=1)]  # position in the whole chain, 1 for the first
    previous_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None
    corrects: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    correction_note: Text | None = None
    published_at: datetime
    recipe: str
    title: Text
    description: Text
    summary: Text  # the plain-language opening sentence(s)
    methodology: Methodology
    tables: tuple[Table, ...]

    @property
    def slug(self) -> str:
        """``<release_id>-v<version>``: the release's address on the public site."""
        return f"{self.release_id}-v{self.version}"

    def table(self, table_id: str) -> Table:
        for table in self.tables:
            if table.table_id == table_id:
                return table
        raise KeyError(table_id)
