"""From completed rounds to a release document. Pure functions; no I/O.

:func:`compose` checks that every round a recipe needs is usable (closed, with a sector sum,
with noise, with the measure and dimensions the table asks for) and raises
:class:`ComposeError` naming every problem otherwise, so that nothing is published from a
missing, failed or partial-quorum round. It then builds each table (summing over dimensions
the table leaves out), makes the tables consistent with each other (one figure for every margin
they share: :mod:`aggregator.releases.consistency`), post-processes each figure, and writes the
methodology and a plain-language summary whose headline is that same consistent total. Chain
fields (sequence, previous hash, version) are added by ``publish``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from aggregator.merge import margins
from aggregator.releases import consistency
from aggregator.releases.document import (
    Cell,
    Methodology,
    ReleaseDocument,
    Table,
    TableCoverage,
    TablePrivacy,
    Text,
)
from aggregator.releases.recipe import Recipe, TableRecipe
from aggregator.releases.summary import summary
from protocol import publication
from protocol.catalogue import CATALOGUE_VERSION, dimension
from protocol.figures import Aggregation, deduplicated, sector_label
from protocol.privacy_loss import zcdp_to_epsilon
from protocol.query import Measure, Mechanism
from protocol.results import NodeStatus, RoundResult, RoundState

# The public site's plain-language privacy page, relative to the release page's language root
# (/nl/privacy, /en/privacy); the full explanation is docs/explanation/privacy.md.
PRIVACY_EXPLANATION = "privacy"
MONTHS_NL = (
    "januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september",
    "oktober", "november", "december",
)  # fmt: skip
MONTHS_EN = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
# Every table is a sum over the institutions that answered; for persons that is not a count of
# different people (see protocol.figures), and the unit and title say so.
AGGREGATION = Aggregation.SUM_OVER_INSTITUTIONS
UNITS = {
    Measure.VISITS: Text(nl="bezoeken", en="visits"),
    Measure.PERSONS: Text(
        nl=sector_label(Measure.PERSONS, "nl"), en=sector_label(Measure.PERSONS, "en")
    ),
    Measure.REVENUE: Text(nl="euro", en="euros"),
}
MEASURE_TITLES = {
    m: Text(nl=sector_label(m, "nl").capitalize(), en=sector_label(m, "en").capitalize())
    for m in Measure
}


class ComposeError(ValueError):
    """The release cannot be built; ``problems`` lists every reason, one per table or round."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def cell_label(dim: str, code: str, lang: str) -> str:
    if dim == "month" and len(code) == 7 and code[4] == "-" and code[5:].isdigit():
        names = MONTHS_NL if lang == "nl" else MONTHS_EN
        return f"{names[int(code[5:]) - 1]} {code[:4]}"
    return dimension(dim).label(code, lang)


def dimension_title(dim: str) -> Text:
    d = dimension(dim)
    return Text(nl=d.nl, en=d.en)


@dataclass(frozen=True)
class _Source:
    table: TableRecipe
    result: RoundResult


def check(recipe: Recipe, results: Mapping[str, RoundResult | None]) -> list[_Source]:
    """Every table's round, checked; ``results`` maps table id → its round (None: not found)."""
    problems: list[str] = []
    sources: list[_Source] = []
    for table in recipe.tables:
        result = results.get(table.table_id)
        where = f"table {table.table_id!r}"
        if result is None:
            problems.append(f"{where}: its round {table.round or '(not asked)'} was not found")
            continue
        where += f" (round {result.round_id})"
        if result.state is not RoundState.CLOSED:
            problems.append(f"{where}: the round is still open; wait until it closes")
            continue
        if result.failure:
            problems.append(f"{where}: the secure round failed ({result.failure})")
            continue
        if not result.measures:
            problems.append(
                f"{where}: the round has no sector result (quorum of {result.quorum} not met: "
                f"{result.coverage.answered} of {result.coverage.total} institutions answered)"
            )
            continue
        if not result.noise:
            problems.append(f"{where}: the round was answered without noise (a test setting)")
            continue
        if table.measure not in result.spec.measures:
            problems.append(f"{where}: the round has no {table.measure.value} measure")
            continue
        by = table.by or result.spec.group_by
        unknown = [d for d in by if d not in result.spec.group_by]
        if unknown:
            problems.append(
                f"{where}: the round is not grouped by {', '.join(unknown)} (it has "
                f"{', '.join(result.spec.group_by)})"
            )
            continue
        if tuple(by) != result.spec.group_by and table.measure is Measure.PERSONS:
            problems.append(
                f"{where}: persons cannot be summed over dimensions (a person may be in several "
                "cells); publish persons by all of the round's dimensions"
            )
            continue
        sources.append(_Source(table, result))
    if problems:
        raise ComposeError(problems)
    return sources


def _scale(measure: Measure) -> float:
    return 0.01 if measure is Measure.REVENUE else 1.0  # cents → euros


def _group(source: _Source) -> str:
    """Tables that count the same thing, so must agree on every margin they share: the same
    additive measure, period, filters, domains and contribution bounds, and the same
    institutions answering. A persons table cannot be summed over its cells, so it shares no
    margin with another table and is a group of its own."""
    table, result = source.table, source.result
    if table.measure is Measure.PERSONS:
        return f"table:{table.table_id}"
    spec = result.spec.model_dump(mode="json", include={"period", "filters", "domains", "bounds"})
    answered = sorted(n.node_id for n in result.coverage.nodes if n.status is NodeStatus.ANSWERED)
    return json.dumps([table.measure.value, spec, answered], sort_keys=True)


def _noisy(source: _Source) -> consistency.NoisyTable:
    """The table's noisy cells: its round summed over the dimensions it leaves out."""
    table, result = source.table, source.result
    by = tuple(table.by or result.spec.group_by)
    codes, summed = margins(result.spec, result.measure(table.measure), by)
    scale = _scale(table.measure)
    return consistency.NoisyTable(
        table_id=table.table_id,
        group=_group(source),
        dims=by,
        keys=tuple(codes),
        estimates=tuple(float(e) * scale for e in summed.estimates),
        variances=tuple((se * scale) ** 2 for se in summed.standard_errors),
    )


def _tables(sources: Sequence[_Source], recipe: Recipe) -> tuple[Table, ...]:
    """Every table of the release, made consistent with the others (see consistency)."""
    pp = recipe.post_processing
    noisy = [_noisy(s) for s in sources]
    try:
        consistent = consistency.reconcile(
            noisy, non_negative=pp.non_negative, rounding=pp.rounding
        )
    except consistency.ConsistencyError as exc:
        raise ComposeError([str(exc)]) from None
    return tuple(
        _table(source, recipe, table, values)
        for source, table, values in zip(sources, noisy, consistent, strict=True)
    )


def _table(
    source: _Source,
    recipe: Recipe,
    noisy: consistency.NoisyTable,
    consistent: consistency.ConsistentTable,
) -> Table:
    table, result = source.table, source.result
    spec = result.spec
    by = noisy.dims
    pp = recipe.post_processing
    figures = [
        publication.publish_figure(
            value,
            math.sqrt(variance),
            non_negative=pp.non_negative,
            rounding=pp.rounding,
            suppress_above=pp.suppress_relative_halfwidth,
        )
        for value, variance in zip(consistent.values, noisy.variances, strict=True)
    ]
    cells = tuple(
        Cell(
            codes=key,
            labels=Text(
                nl=" · ".join(cell_label(d, c, "nl") for d, c in zip(by, key, strict=True)),
                en=" · ".join(cell_label(d, c, "en") for d, c in zip(by, key, strict=True)),
            ),
            value=f.value,
            lower=f.lower,
            upper=f.upper,
            standard_error=f.standard_error,
            rounded_to=f.rounded_to,
            suppressed=f.suppressed,
        )
        for key, f in zip(noisy.keys, figures, strict=True)
    )
    total_cell = None
    if pp.consistent_totals:
        # The total of every cell, "." cells included: the same figure in every table that
        # shares it. Its noise is the sum of the cells' (independent) noise variances.
        total = publication.publish_figure(
            consistent.total,
            math.sqrt(math.fsum(noisy.variances)),
            non_negative=pp.non_negative,
            rounding=pp.rounding,
        )
        total_cell = Cell(
            codes=("total",),
            labels=Text(nl="Totaal", en="Total"),
            value=total.value,
            lower=total.lower,
            upper=total.upper,
            standard_error=total.standard_error,
            rounded_to=total.rounded_to,
        )
    dims = [dimension_title(d) for d in by]
    title = table.title or default_title(table.measure, dims)
    privacy = spec.privacy
    rho = privacy.rho if privacy.mechanism is Mechanism.GAUSSIAN else None
    if privacy.mechanism is Mechanism.GAUSSIAN:
        assert privacy.rho is not None
        epsilon, delta = zcdp_to_epsilon(privacy.rho, privacy.delta), privacy.delta
    else:
        assert privacy.epsilon is not None
        epsilon, delta = privacy.epsilon, 0.0
    answered = [n for n in result.coverage.nodes if n.status is NodeStatus.ANSWERED]
    missing = tuple(
        sorted(n.institution for n in result.coverage.nodes if n.status is not NodeStatus.ANSWERED)
    )
    return Table(
        table_id=table.table_id,
        title=title,
        round_id=result.round_id,
        measure=table.measure.value,
        unit=UNITS[table.measure],
        group_by=by,
        dimension_titles=tuple(dims),
        cells=cells,
        total=total_cell,
        privacy=TablePrivacy(
            mode=result.mode.value,
            mechanism=privacy.mechanism.value,
            rho=rho,
            epsilon=epsilon,
            delta=delta,
            threshold=result.threshold,
        ),
        coverage=TableCoverage(
            institutions=result.coverage.total, answered=len(answered), missing=missing
        ),
        bounds={
            "max_visits_per_person": spec.bounds.max_visits_per_person,
            "max_cells_per_person": spec.bounds.max_cells_per_person,
            "revenue_min_cents": spec.bounds.revenue_min_cents,
            "revenue_max_cents": spec.bounds.revenue_max_cents,
        },
        aggregation=AGGREGATION,
        deduplicated=deduplicated(table.measure, AGGREGATION),
    )


def default_title(measure: Measure, dims: Sequence[Text]) -> Text:
    """ "Bezoeken per maand en discipline"; for persons, whose label already says "per
    instelling": "Bezoekers per instelling, opgeteld (niet ontdubbeld), naar leeftijdsgroep"."""
    name = MEASURE_TITLES[measure]
    nl_by, en_by = (", naar", ", by") if measure is Measure.PERSONS else (" per", " by")
    return Text(
        nl=f"{name.nl}{nl_by} " + " en ".join(d.nl.lower() for d in dims),
        en=f"{name.en}{en_by} " + " and ".join(d.en.lower() for d in dims),
    )


def compose(
    recipe: Recipe,
    results: Mapping[str, RoundResult | None],
    *,
    release_id: str | None = None,
    version: int,
    sequence: int,
    previous_hash: str | None,
    corrects: str | None,
    published_at: datetime,
) -> ReleaseDocument:
    sources = check(recipe, results)
    tables = _tables(sources, recipe)
    rounds = {s.result.round_id: s.result for s in sources}
    specs = [r.spec for r in rounds.values()]
    rho_total = math.fsum(s.privacy.rho_charged for s in specs)
    delta = max((s.privacy.delta for s in specs), default=1e-7)
    laplace_only = all(s.privacy.mechanism is Mechanism.LAPLACE for s in specs)
    institutions = sorted(
        {
            n.institution
            for r in rounds.values()
            for n in r.coverage.nodes
            if n.status is NodeStatus.ANSWERED
        }
    )
    asked = len({n.node_id for r in rounds.values() for n in r.coverage.nodes})
    start = min(s.period.start for s in specs)
    end = max(s.period.end for s in specs)
    if laplace_only:
        epsilon_total = math.fsum(s.privacy.epsilon or 0.0 for s in specs)
        delta_total = 0.0
    else:
        epsilon_total, delta_total = zcdp_to_epsilon(rho_total, delta), delta
    return ReleaseDocument(
        release_id=release_id or recipe.release_id,
        version=version,
        sequence=sequence,
        previous_hash=previous_hash,
        corrects=corrects,
        correction_note=recipe.correction_note if corrects else None,
        published_at=published_at,
        recipe=recipe.release_id,
        title=recipe.title,
        description=recipe.description,
        summary=summary(tables, len(institutions), start, end),
        methodology=Methodology(
            rho_total=None if laplace_only else rho_total,
            epsilon_total=epsilon_total,
            delta_total=delta_total,
            mechanisms=tuple(sorted({s.privacy.mechanism.value for s in specs})),
            modes=tuple(sorted({r.mode.value for r in rounds.values()})),
            catalogue_version=CATALOGUE_VERSION,
            period_start=start,
            period_end=end,
            institutions=tuple(institutions),
            institutions_asked=asked,
            post_processing=recipe.post_processing,
            privacy_explanation=PRIVACY_EXPLANATION,
        ),
        tables=tables,
    )
