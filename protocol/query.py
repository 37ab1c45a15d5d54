"""The query spec: a declarative, typed description of one aggregate question.

A query is never code and never SQL. It names a period, filters on catalogue dimensions, the
dimensions to group by, the measures, the contribution bounds per person, and the privacy cost.
Validation errors say what is wrong and what to do about it.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import uuid
from collections.abc import Iterator
from datetime import date
from enum import StrEnum
from typing import Annotated, Literal, NoReturn, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from protocol.canonical import canonical_bytes
from protocol.catalogue import (
    DIMENSIONS,
    UNKNOWN,
    CatalogueError,
    DimensionKind,
    check_value,
    dimension,
    temporal_domain,
)

# The protocol's own ceiling; a node's policy usually sets a lower one.
MAX_CELLS = 100_000
MAX_GROUP_BY = 4
MAX_VISITS_PER_PERSON = 1_000
MAX_CELLS_PER_PERSON = 1_000
MAX_PERIOD_DAYS = 3_660
# Revenue is clamped per admission; the bound keeps |sum| far below 2^63 at any realistic scale.
MAX_CLAMP_CENTS = 10_000_000
# The largest noise scale a query may need: noise this wide is useless, and wider noise would
# push released values beyond ±(2**53 − 1), which no message can carry (protocol.http).
MAX_NOISE_SCALE = 1e12


class FrozenDict(dict[str, tuple[str, ...]]):
    """A read-only dict, so that a frozen QuerySpec's filters and domains cannot change either."""

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("a query spec is immutable; build a new one with model_copy(update=...)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only
    __ior__ = _read_only

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> FrozenDict:
        return self

    def __reduce__(self) -> tuple[type[FrozenDict], tuple[dict[str, tuple[str, ...]]]]:
        return (FrozenDict, (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))


def _freeze(value: dict[str, tuple[str, ...]]) -> FrozenDict:
    return FrozenDict(value)


ValueLists = Annotated[dict[str, tuple[str, ...]], AfterValidator(_freeze)]


class Measure(StrEnum):
    VISITS = "visits"
    PERSONS = "persons"
    REVENUE = "revenue"


class Mechanism(StrEnum):
    GAUSSIAN = "gaussian"  # discrete Gaussian, ρ-zCDP
    LAPLACE = "laplace"  # discrete Laplace, pure ε-DP


class Mode(StrEnum):
    INDEPENDENT = "independent"
    SECURE = "secure"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Period(_Frozen):
    """Events whose start date lies in [start, end], both inclusive."""

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end < self.start:
            raise ValueError(f"period end {self.end} lies before its start {self.start}; swap them")
        if (self.end - self.start).days > MAX_PERIOD_DAYS:
            raise ValueError(f"period is longer than {MAX_PERIOD_DAYS} days; split the query")
        return self


class Bounds(_Frozen):
    """Contribution bounds per person for one query (see docs/explanation/privacy.md)."""

    max_visits_per_person: Annotated[int, Field(ge=1, le=MAX_VISITS_PER_PERSON)] = 10
    max_cells_per_person: Annotated[int, Field(ge=1, le=MAX_CELLS_PER_PERSON)] = 10
    revenue_min_cents: Annotated[int, Field(ge=-MAX_CLAMP_CENTS, le=MAX_CLAMP_CENTS)] = 0
    revenue_max_cents: Annotated[int, Field(ge=-MAX_CLAMP_CENTS, le=MAX_CLAMP_CENTS)] = 10_000

    @model_validator(mode="after")
    def _clamp_order(self) -> Self:
        if self.revenue_min_cents > self.revenue_max_cents:
            raise ValueError(
                "revenue clamp bounds are inverted: revenue_min_cents "
                f"({self.revenue_min_cents}) is above revenue_max_cents "
                f"({self.revenue_max_cents}); swap them"
            )
        return self

    @property
    def effective_cells_per_person(self) -> int:
        """A person keeps at most max_visits rows, so touches at most that many cells."""
        return min(self.max_cells_per_person, self.max_visits_per_person)


class Privacy(_Frozen):
    """The privacy cost of the whole query, split evenly over its measures.

    ``rho`` is the zCDP cost (discrete Gaussian); ``epsilon`` the pure-DP cost (discrete Laplace).
    Give exactly the one that fits the mechanism.
    """

    mechanism: Mechanism = Mechanism.GAUSSIAN
    rho: float | None = None
    epsilon: float | None = None
    delta: Annotated[float, Field(gt=0, lt=1e-3)] = 1e-7

    @field_validator("rho", "epsilon")
    @classmethod
    def _positive_finite(cls, value: float | None) -> float | None:
        if value is None:
            return None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"privacy cost must be a positive, finite number, got {value!r}")
        if value > 10:
            raise ValueError(f"privacy cost {value} is implausibly large; the maximum is 10")
        return value

    @model_validator(mode="after")
    def _one_cost(self) -> Self:
        if self.mechanism is Mechanism.GAUSSIAN:
            if self.rho is None or self.epsilon is not None:
                raise ValueError("the gaussian mechanism needs 'rho' (and no 'epsilon')")
        elif self.epsilon is None or self.rho is not None:
            raise ValueError("the laplace mechanism needs 'epsilon' (and no 'rho')")
        return self

    @property
    def rho_charged(self) -> float:
        """The zCDP cost charged to the ledger: ρ, or ε²/2 for pure ε-DP (Bun & Steinke 2016)."""
        if self.mechanism is Mechanism.GAUSSIAN:
            assert self.rho is not None
            return self.rho
        assert self.epsilon is not None
        return self.epsilon**2 / 2


def new_query_id() -> str:
    return str(uuid.uuid4())


QueryId = Annotated[str, Field(min_length=8, max_length=80, pattern=r"^[A-Za-z0-9._:-]+$")]


class QuerySpec(_Frozen):
    catalogue_version: Literal["1"] = "1"
    query_id: QueryId = Field(default_factory=new_query_id)
    title: Annotated[str, Field(max_length=200)] = ""
    period: Period
    filters: ValueLists = Field(default_factory=FrozenDict)
    group_by: tuple[str, ...] = ()
    domains: ValueLists = Field(default_factory=FrozenDict)
    measures: tuple[Measure, ...] = (Measure.VISITS,)
    bounds: Bounds = Field(default_factory=Bounds)
    privacy: Privacy
    mode: Mode = Mode.INDEPENDENT

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("group_by names a dimension twice")
        if len(value) > MAX_GROUP_BY:
            raise ValueError(f"group_by has {len(value)} dimensions; at most {MAX_GROUP_BY}")
        for name in value:
            _known(name)
        return value

    @field_validator("measures")
    @classmethod
    def _measures(cls, value: tuple[Measure, ...]) -> tuple[Measure, ...]:
        if not value:
            raise ValueError("a query needs at least one measure: visits, persons or revenue")
        if len(set(value)) != len(value):
            raise ValueError("measures lists a measure twice")
        return value

    @field_validator("filters", "domains")
    @classmethod
    def _value_lists(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for name, codes in value.items():
            _known(name)
            if not codes:
                raise ValueError(
                    f"the value list for {name!r} is empty, so no row could match; "
                    "list at least one value or leave the dimension out"
                )
            if len(set(codes)) != len(codes):
                raise ValueError(f"the value list for {name!r} repeats a value")
            for code in codes:
                try:
                    check_value(name, code)
                except CatalogueError as exc:
                    raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _cells(self) -> Self:
        for name in self.domains:
            if name not in self.group_by:
                raise ValueError(
                    f"domains lists {name!r}, which is not in group_by; use filters to restrict "
                    "a dimension you do not group by"
                )
        for name in self.group_by:
            dim = DIMENSIONS[name]
            if dim.kind is DimensionKind.CODED and name not in self.domains:
                raise ValueError(
                    f"grouping by {name!r} needs its codes listed in domains (for example "
                    f'"domains": {{"{name}": [...]}}); the catalogue cannot list every code'
                )
        for name in self.group_by:
            if not self.domain(name):
                raise ValueError(
                    f"the domain of {name!r} is empty after applying its filter; "
                    "the filter and the group-by leave no cell"
                )
        cells = self.cell_count
        if cells > MAX_CELLS:
            raise ValueError(
                f"the query has {cells} cells, more than the protocol's limit of {MAX_CELLS}; "
                "group by fewer dimensions or restrict their domains"
            )
        from protocol.calibration import expected_noise  # it needs this module

        widest = max(noise.scale for noise in expected_noise(self).values())
        if widest > MAX_NOISE_SCALE:
            raise ValueError(
                f"this privacy cost needs noise of scale {widest:.3g}, more than the protocol's "
                f"limit of {MAX_NOISE_SCALE:g}; raise rho or epsilon, or tighten the bounds"
            )
        return self

    # -- derived, public facts -------------------------------------------------------------

    def domain(self, name: str) -> tuple[str, ...]:
        """The ordered cell domain of a group-by dimension."""
        if name in self.domains:
            listed = self.domains[name]
            if name in self.filters:
                allowed = set(self.filters[name])
                return tuple(code for code in listed if code in allowed)
            return listed
        dim = dimension(name)
        if dim.kind is DimensionKind.TEMPORAL:
            full = temporal_domain(name, self.period.start, self.period.end)
        else:
            full = dim.codes
        if name in self.filters:
            allowed = set(self.filters[name])
            return tuple(code for code in full if code in allowed)
        return full

    @property
    def cell_count(self) -> int:
        return math.prod(len(self.domain(name)) for name in self.group_by)

    @property
    def cells_per_person(self) -> int:
        """The bound g on cells per person: also never more than the query has cells."""
        return min(self.bounds.effective_cells_per_person, self.cell_count)

    def cells(self) -> Iterator[tuple[str, ...]]:
        """Cell keys in canonical order (the Cartesian product of the domains, row-major)."""
        return itertools.product(*(self.domain(name) for name in self.group_by))

    def rho_per_measure(self) -> float:
        return self.privacy.rho_charged / len(self.measures)

    def canonical(self) -> bytes:
        return canonical_bytes(self.model_dump(mode="json"))

    def digest(self) -> str:
        """SHA-256 of the canonical bytes; the ledger stores it to detect a reused query id."""
        return hashlib.sha256(self.canonical()).hexdigest()


def _known(name: str) -> None:
    try:
        dimension(name)
    except CatalogueError as exc:
        raise ValueError(str(exc)) from None


__all__ = [
    "MAX_CELLS",
    "UNKNOWN",
    "Bounds",
    "Measure",
    "Mechanism",
    "Mode",
    "Period",
    "Privacy",
    "QuerySpec",
]
