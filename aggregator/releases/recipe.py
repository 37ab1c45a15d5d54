"""Release recipes: what a release holds, as a TOML file or a built-in name.

A recipe names the release series, its titles and description in Dutch and English, the
post-processing, and its tables. Each table comes from one round: either a completed round
(``round = "<id>"``) or a standard report that ``publish`` asks first (``report = "volume"``).
A table shows one measure, by all of the round's dimensions or by some of them (``by``): the
other dimensions are summed over (only for additive measures: visits and revenue).

The built-in recipe ``standard-YEAR`` (for example ``standard-2025``) is the sector's annual
report: visits by month and by artform, and by age band, province and audience segment the
visitors per institution, summed over the institutions (not deduplicated: a person who visits
three institutions counts three times; see protocol.figures), and visits by province.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aggregator.releases.document import PostProcessing, Text
from protocol.publication import SUPPRESS_RELATIVE_HALFWIDTH
from protocol.query import Measure, Mode
from protocol.reports import REPORTS


class RecipeError(ValueError):
    """The recipe cannot be read or is inconsistent; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TableRecipe(_Strict):
    table_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    report: str | None = None  # a standard report to ask (protocol.reports)
    round: str | None = None  # or a completed round to use
    measure: Measure
    by: tuple[str, ...] | None = None  # default: all of the round's group_by dimensions
    title: Text | None = None  # default: from the measure and dimensions

    @model_validator(mode="after")
    def _source(self) -> Self:
        if (self.report is None) == (self.round is None):
            raise ValueError(f"table {self.table_id!r}: give either 'report' or 'round'")
        if self.report is not None and self.report not in REPORTS:
            raise ValueError(
                f"table {self.table_id!r}: unknown report {self.report!r}; the standard reports "
                f"are: {', '.join(REPORTS)}"
            )
        if self.by is not None and len(self.by) == 0:
            raise ValueError(f"table {self.table_id!r}: 'by' needs at least one dimension")
        return self


class Recipe(_Strict):
    release_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
    title: Text
    description: Text
    year: Annotated[int, Field(ge=2000, le=2100)] | None = None  # the period of asked reports
    rho: Annotated[float, Field(gt=0, le=10)] = 0.1  # per report asked
    mode: Mode = Mode.SECURE
    deadline_seconds: Annotated[int, Field(ge=1, le=7 * 86400)] = 300
    # Secure rounds: the institutions' operators' time to approve (may be days); default as above.
    approval_deadline_seconds: Annotated[int, Field(ge=1, le=7 * 86400)] | None = None
    post_processing: PostProcessing = PostProcessing(
        suppress_relative_halfwidth=SUPPRESS_RELATIVE_HALFWIDTH
    )
    correction_note: Text | None = None  # required when this corrects a published version
    tables: Annotated[tuple[TableRecipe, ...], Field(min_length=1, max_length=200)]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        ids = [t.table_id for t in self.tables]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"table ids must be unique; repeated: {', '.join(duplicates)}")
        if any(t.report is not None for t in self.tables) and self.year is None:
            raise ValueError("a recipe that asks reports needs a 'year'")
        return self

    def reports_to_ask(self) -> dict[str, str]:
        """report name → the first table that needs it (each report is asked once)."""
        asked: dict[str, str] = {}
        for table in self.tables:
            if table.report is not None:
                asked.setdefault(table.report, table.table_id)
        return asked


def standard(year: int) -> Recipe:
    return Recipe(
        release_id=f"sector-{year}",
        title=Text(
            nl=f"Bezoek en bezoekers van de culturele sector in {year}",
            en=f"Visits and visitors of the cultural sector in {year}",
        ),
        description=Text(
            nl=(
                f"Bezoeken en bezoekers van de deelnemende culturele instellingen in {year}: per "
                "maand, discipline, leeftijdsgroep, provincie en doelgroepsegment. Bezoekers zijn "
                "per instelling geteld en daarna opgeteld (niet ontdubbeld): wie meer "
                "instellingen bezocht, telt bij elk ervan mee. Elke instelling hield haar eigen "
                "gegevens; de cijfers zijn samengevoegd met differentiële privacy, zodat geen "
                "bezoeker en geen instelling herkenbaar is."
            ),
            en=(
                f"Visits and visitors of the participating cultural institutions in {year}: by "
                "month, artform, age band, province and audience segment. Visitors were counted "
                "per institution and then summed (not deduplicated): someone who visited several "
                "institutions counts at each of them. Every institution kept its own data; the "
                "figures were merged with differential privacy, so that no visitor and no "
                "institution can be singled out."
            ),
        ),
        year=year,
        tables=(
            TableRecipe(
                table_id="visits-month", report="volume", measure=Measure.VISITS, by=("month",)
            ),
            TableRecipe(
                table_id="visits-artform", report="volume", measure=Measure.VISITS, by=("artform",)
            ),
            TableRecipe(table_id="persons-age", report="reach_age", measure=Measure.PERSONS),
            TableRecipe(
                table_id="visits-province", report="origin_province", measure=Measure.VISITS
            ),
            TableRecipe(
                table_id="persons-province", report="origin_province", measure=Measure.PERSONS
            ),
            TableRecipe(
                table_id="persons-segment", report="segment_profile", measure=Measure.PERSONS
            ),
        ),
    )


STANDARD = re.compile(r"^standard-(\d{4})$")


def builtin_names() -> str:
    return "standard-YEAR (for example standard-2025)"


def load(source: str) -> Recipe:
    """A recipe from a built-in name or a TOML file."""
    match = STANDARD.match(source)
    if match:
        try:
            return standard(int(match.group(1)))
        except ValidationError as exc:
            raise RecipeError(f"recipe {source!r}: {_first(exc)}") from None
    path = Path(source)
    if not path.exists():
        raise RecipeError(
            f"no recipe file {source!r}, and it is not a built-in recipe ({builtin_names()})"
        )
    try:
        data: Any = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read the recipe: {exc}") from None
    if "table" in data and "tables" not in data:
        data["tables"] = data.pop("table")  # TOML's [[table]] array reads naturally
    return parse(data, str(path))


def parse(data: Any, where: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(f"{where}: {_first(exc)}") from None


def _first(exc: ValidationError) -> str:
    messages = []
    for error in exc.errors()[:3]:
        location = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        messages.append(f"{location}: {message}" if location else message)
    return "; ".join(messages)
