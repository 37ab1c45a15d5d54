"""`publieksdata ask`: ask the federation a question through the aggregator, and show the answer.

Figures are shown as aggregator.client.presentation says: never below 0, revenue in euros, and
marked "*" when their 95% interval is too wide to be useful (the public site's "." rule).

Exit codes: 0 success; 1 error; 2 usage error (also: no aggregator URL or token); 3 refused:
nodes would refuse the question (nothing was sent), or the round closed without its quorum.
With ``--preview`` nothing is ever asked or spent; it exits 3 when the round would be turned down.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aggregator.client import (
    TOKEN_ENV,
    URL_ENV,
    AskOptions,
    Client,
    ClientError,
    NotConfigured,
    PartialResultWarning,
    Result,
    RoundPreview,
    WouldBeRefused,
)
from aggregator.client.presentation import EUROS_PER_CENT, Series, present
from node.cli import fail
from protocol.catalogue import DIMENSIONS
from protocol.figures import not_deduplicated_note, sector_label
from protocol.query import Mode as AskMode
from protocol.query import QuerySpec
from protocol.reports import REPORTS
from publieksdata.render import (
    coverage_table,
    number,
    reason_text,
    shown_interval,
    too_wide_note,
)

EXIT_USAGE = 2
EXIT_REFUSED = 3
ROW_LIMIT = 40
DAY = "%Y-%m-%d"

console = Console()
err = Console(stderr=True, soft_wrap=True)  # messages name paths: never hard-wrap them

_HEADERS = {
    "visits": ("bezoeken", "visits"),
    # Summed over the institutions, so not a count of different people (protocol.figures).
    "persons": (sector_label("persons", "nl"), sector_label("persons", "en")),
    "revenue": ("omzet (€)", "revenue (€)"),
    "mean_price": ("gemiddelde prijs (€)", "mean price (€)"),
}


def open_client(url: str | None, token: str | None) -> Client:
    """The client the command uses (tests replace this to talk to an in-process aggregator)."""
    return Client(url, token)


def _t(lang: str, nl: str, en: str) -> str:
    return nl if lang == "nl" else en


def _question(
    spec: Path | None,
    report: str | None,
    year: int | None,
    start: datetime | None,
    end: datetime | None,
    rho: float | None,
    epsilon: float | None,
    codes: str | None,
    mode: str | None = None,
) -> tuple[QuerySpec | None, AskOptions, tuple[str, ...]]:
    """The spec or report options to send, and the dimensions the answer will be grouped by."""
    if (spec is None) == (report is None):
        raise typer.BadParameter("give a SPEC file or --report NAME", param_hint="SPEC / --report")
    if spec is not None:
        if any(v is not None for v in (year, start, end, rho, epsilon, codes, mode)):
            raise typer.BadParameter(
                "these go with --report; a spec file states its own period, cost, codes and mode",
                param_hint="--year, --start, --end, --rho, --epsilon, --codes, --mode",
            )
        try:
            query = QuerySpec.model_validate_json(spec.read_text("utf-8"))
        except OSError as exc:
            raise fail(f"cannot read {spec}: {exc.strerror}") from None
        except ValueError as exc:
            raise fail(f"{spec} is not a valid query spec:\n{exc}") from None
        return query, {}, query.group_by
    assert report is not None
    if report not in REPORTS:
        raise typer.BadParameter(
            f"unknown report {report!r}; choose one of: {', '.join(REPORTS)}", param_hint="--report"
        )
    if year is not None and (start is not None or end is not None):
        raise typer.BadParameter("give --year, or --start and --end, not both", param_hint="--year")
    if (start is None) != (end is None):
        raise typer.BadParameter("give both --start and --end", param_hint="--start / --end")
    if rho is not None and epsilon is not None:
        raise typer.BadParameter("give --rho or --epsilon, not both", param_hint="--epsilon")
    options: AskOptions = {
        "report": report,
        "year": year,
        "start": start.date() if start else None,
        "end": end.date() if end else None,
        "rho": rho,
        "epsilon": epsilon,
        "codes": tuple(c.strip() for c in codes.split(",") if c.strip()) if codes else None,
        "mode": mode,
    }
    return None, options, REPORTS[report].group_by


# How each kind of series is shown (aggregator.client.presentation: money already in euros):
# multiplied by factor, in this format.
_FORMATS = {
    "count": (1, ",.0f"),
    "money": (1, ",.0f"),
    "price": (1, ",.2f"),
    "ratio": (1, ",.2f"),
    "share": (100, ".1f"),  # shown in percent
}
Shown = tuple[str, Series]  # header, the series as shown


def _interval(series: Series, i: int, lang: str) -> str:
    factor, fmt = _FORMATS[series.kind]
    return shown_interval(series, i, fmt, factor, lang=lang)


def _table(title: str, result: Result, lang: str, series: Sequence[Shown]) -> Table:
    """One row per cell (the first ROW_LIMIT), each series as estimate (95% interval), marked
    when the interval is too wide to be useful."""
    raw = result.raw
    table = Table(title=title)
    for name in raw.group_by:
        table.add_column(_t(lang, DIMENSIONS[name].nl, DIMENSIONS[name].en))
    for header, _ in series:
        table.add_column(header, justify="right")
    for i, cell in enumerate(raw.cells[:ROW_LIMIT]):
        labels = [DIMENSIONS[n].label(c, lang) for n, c in zip(raw.group_by, cell, strict=True)]
        table.add_row(*labels, *(_interval(s, i, lang) for _, s in series))
    notes = []
    if len(raw.cells) > ROW_LIMIT:
        more = len(raw.cells) - ROW_LIMIT
        notes.append(
            _t(
                lang,
                f"… nog {more} cellen (--csv voor alles)",
                f"… {more} more cells (--csv for all)",
            )
        )
    if any(s.too_wide[i] for _, s in series for i in range(min(len(raw.cells), ROW_LIMIT))):
        notes.append(
            too_wide_note(lang)
            + _t(
                lang,
                " --csv en --json bevatten de ruwe waarden.",
                " --csv and --json hold the raw values.",
            )
        )
    if notes:
        table.caption = "\n".join(notes)
    return table


def _header(name: str, lang: str) -> str:
    nl, en = _HEADERS.get(name, (name, name))
    return _t(lang, nl, en)


def _print_result(result: Result, lang: str, shares_along: str | None) -> None:
    interval = _t(lang, "met 95%-interval", "with 95% interval")
    measures: list[Shown] = [
        (_header(m.measure.value, lang), present(m)) for m in result.raw.measures
    ]
    console.print(_table(f"{result.spec.title} ({interval})", result, lang, measures))
    if any(m.deduplicated is False for m in result.raw.measures):
        console.print(not_deduplicated_note(lang))
    ratios: list[Shown] = [(_header(r.name, lang), present(r)) for r in result.raw.ratios]
    if ratios:
        console.print(
            _table(_t(lang, "Gemiddelden", "Means") + f" ({interval})", result, lang, ratios)
        )
    if shares_along is not None:
        dim = DIMENSIONS[shares_along]
        shares: list[Shown] = [
            (
                _t(lang, "aandeel ", "share of ") + _header(m.measure.value, lang) + " (%)",
                present(result.shares(m.measure, shares_along)),
            )
            for m in result.raw.measures
        ]
        title = _t(lang, f"Aandelen binnen elke {dim.nl}", f"Shares within each {dim.en}")
        console.print(_table(f"{title} ({interval})", result, lang, shares))


def _nodes_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title)
    for header in headers:
        table.add_column(header)
    for row in rows:
        table.add_row(*row)
    return table


def _export(path: Path, write: Callable[[TextIO], object]) -> None:
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            write(handle)
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror}") from None


def _write_csv(handle: TextIO, rows: list[dict[str, Any]]) -> None:
    writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def _preview_tables(seen: RoundPreview, lang: str) -> list[Table]:
    """The nodes (cost, refusal) and each measure's expected accuracy, as two tables."""
    secure = seen.threshold is not None
    headers = [
        _t(lang, "instelling", "institution"),
        "node id",
        _t(lang, "ρ van het budget", "ρ charged"),
    ]
    if secure:
        headers.append(_t(lang, "ρ in het slechtste geval", "worst-case ρ"))
    headers.append(_t(lang, "zou", "would"))
    rows = []
    for n in seen.nodes:
        if n.refusal is not None:
            verdict = _t(lang, "weigeren: ", "refuse: ") + n.refusal
        elif not n.reported:
            verdict = _t(lang, "onbekend (nog niet gerapporteerd)", "unknown (not reported yet)")
        else:
            verdict = _t(lang, "antwoorden", "answer")
        worst = [f"{n.worst_case_rho:.4g}" if n.worst_case_rho is not None else "–"]
        rows.append([n.institution, n.node_id, f"{n.rho:.4g}", *(worst if secure else []), verdict])
    nodes = _nodes_table(
        _t(lang, "Wat elke instelling betaalt", "What each node pays"), headers, rows
    )
    mode = seen.mode.value + (f", t = {seen.threshold}" if secure else "")
    accuracy = Table(
        title=_t(
            lang,
            f"Verwachte nauwkeurigheid per cel ({seen.answering} antwoorden, {mode})",
            f"Expected accuracy of each cell ({seen.answering} answers, {mode})",
        )
    )
    for header in (
        _t(lang, "maat", "measure"),
        _t(lang, "standaardfout", "standard error"),
        _t(lang, "95%-marge (±)", "95% half-width (±)"),
        _t(lang, "op een releasepagina getoond vanaf", "shown on a release page from"),
    ):
        accuracy.add_column(header, justify="right")
    for m in seen.measures:
        # The preview is in the wire format's units: revenue in cents, shown in euros.
        scale = round(1 / EUROS_PER_CENT) if m.measure.value == "revenue" else 1
        fmt = _FORMATS["money" if m.measure.value == "revenue" else "count"][1]
        shown = "–" if m.shown_from is None else number(m.shown_from / scale, fmt, lang)
        accuracy.add_row(
            _header(m.measure.value, lang),
            number(m.standard_error / scale, ",.1f", lang),
            number(m.half_width / scale, ",.1f", lang),
            shown,
        )
    if seen.suppress_relative_halfwidth is not None:
        accuracy.caption = _t(
            lang,
            "Een cel met een lager cijfer wordt op een releasepagina '.' (marge > "
            f"{seen.suppress_relative_halfwidth:.0%} van het cijfer).",
            "A cell with a lower figure is shown as '.' on a release page (half-width > "
            f"{seen.suppress_relative_halfwidth:.0%} of the figure).",
        )
    return [nodes, accuracy] if seen.measures else [nodes]


def _show_preview(
    client: Client, query: QuerySpec | None, options: AskOptions, lang: str, json_file: Path | None
) -> None:
    with client:
        try:
            seen = client.preview(query, **options)
        except ClientError as exc:
            raise fail(str(exc)) from None
    if json_file is not None:
        _export(json_file, lambda handle: handle.write(seen.model_dump_json(indent=2)))
    for table in _preview_tables(seen, lang):
        console.print(table)
    for code in sorted({n.refusal for n in seen.nodes if n.refusal is not None}):
        console.print(reason_text(code, lang))
    console.print(
        _t(
            lang,
            "Voorvertoning: er is niets gevraagd en geen budget uitgegeven.",
            "Preview: nothing was asked and no budget was spent.",
        )
    )
    if seen.problem is not None:
        raise fail(
            _t(lang, "deze vraag zou worden geweigerd: ", "this question would be turned down: ")
            + seen.problem,
            EXIT_REFUSED,
        )


def ask(
    spec: Annotated[
        Path | None, typer.Argument(metavar="SPEC", help="A query spec (JSON).")
    ] = None,
    report: Annotated[str | None, typer.Option(help=f"One of: {', '.join(REPORTS)}.")] = None,
    year: Annotated[int | None, typer.Option(help="Year to report on; default last year.")] = None,
    start: Annotated[datetime | None, typer.Option(formats=[DAY], help="First day.")] = None,
    end: Annotated[datetime | None, typer.Option(formats=[DAY], help="Last day.")] = None,
    rho: Annotated[float | None, typer.Option(help="Privacy cost (zCDP ρ); default 0.1.")] = None,
    epsilon: Annotated[float | None, typer.Option(help="Pure-DP cost ε instead of ρ.")] = None,
    codes: Annotated[str | None, typer.Option(help="Codes for reports that need them.")] = None,
    node: Annotated[list[str] | None, typer.Option(help="Ask only this node id (repeat).")] = None,
    deadline: Annotated[int | None, typer.Option(min=1, help="Seconds to answer.")] = None,
    quorum: Annotated[int | None, typer.Option(min=1, help="Answers needed for a result.")] = None,
    mode: Annotated[
        AskMode | None,
        typer.Option(
            help="secure: the aggregator sees only the sum (default under --rho); independent: "
            "every node adds full noise."
        ),
    ] = None,
    threshold: Annotated[
        int | None,
        typer.Option(min=2, help="Secure mode: nodes that must stay to the end (default ⌈2N/3⌉)."),
    ] = None,
    shares: Annotated[str | None, typer.Option(help="Show shares along this dimension.")] = None,
    lang: Annotated[
        str, typer.Option(help="Language of labels, titles and progress: nl or en.")
    ] = "nl",
    csv_file: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            help="Write the cells as CSV, as shown: never below 0, money in euros, with the raw "
            "estimates (_raw), a _too_wide flag and the coverage.",
        ),
    ] = None,
    json_file: Annotated[
        Path | None,
        typer.Option(
            "--json", help="Write the result as the aggregator sent it (raw estimates, cents)."
        ),
    ] = None,
    preview: Annotated[
        bool,
        typer.Option(
            "--preview",
            help="Ask nothing and spend nothing: show what each node would pay, which would "
            "refuse and how wide each cell's 95% interval would be.",
        ),
    ] = False,
    url: Annotated[str | None, typer.Option(envvar=URL_ENV, help="The aggregator's URL.")] = None,
    token: Annotated[str | None, typer.Option(envvar=TOKEN_ENV, help="Analyst API token.")] = None,
) -> None:
    """Ask every institution's node a question through the aggregator; show the merged answer."""
    if lang not in ("nl", "en"):
        raise typer.BadParameter("choose nl or en", param_hint="--lang")
    query, options, group_by = _question(
        spec, report, year, start, end, rho, epsilon, codes, mode.value if mode else None
    )
    if shares is not None and shares not in group_by:
        raise typer.BadParameter(
            f"the answer is grouped by {', '.join(group_by) or 'nothing'}", param_hint="--shares"
        )
    for path, hint in ((csv_file, "--csv"), (json_file, "--json")):
        if path is not None and not path.parent.is_dir():  # before any budget is spent
            raise typer.BadParameter(f"there is no directory {path.parent}", param_hint=hint)
    if preview and (csv_file is not None or shares is not None):
        raise typer.BadParameter(
            "a preview has no figures to export or share out", param_hint="--csv / --shares"
        )
    nodes = [n.strip() for item in node or () for n in item.split(",") if n.strip()]
    try:
        client = open_client(url, token)
    except NotConfigured as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    if preview:
        options["nodes"] = nodes or None
        options["quorum"] = quorum
        options["threshold"] = threshold
        _show_preview(client, query, options, lang, json_file)
        return
    columns = (
        TextColumn(
            _t(
                lang,
                "Nodes klaar (beantwoord, geweigerd of te laat)",
                "Nodes done (answered, refused or timed out)",
            )
        ),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    progress = Progress(*columns, console=err)
    with client, progress:
        task = progress.add_task("nodes", total=None)
        options["nodes"] = nodes or None
        options["deadline_seconds"] = deadline
        options["quorum"] = quorum
        options["threshold"] = threshold
        options["progress"] = lambda done, total: progress.update(task, completed=done, total=total)
        try:
            with warnings.catch_warnings():  # the coverage table and a message say it below
                warnings.simplefilter("ignore", PartialResultWarning)
                result = client.ask(query, **options)
        except WouldBeRefused as exc:
            progress.stop()
            rows = [(n.institution, n.node_id, reason_text(n.reason, lang)) for n in exc.nodes]
            headers = (
                _t(lang, "instelling", "institution"),
                "node id",
                _t(lang, "reden", "reason"),
            )
            title = _t(lang, "Nodes die zouden weigeren", "Nodes that would refuse")
            err.print(_nodes_table(title, headers, rows))
            raise fail(f"nothing was sent: {exc.detail}", EXIT_REFUSED) from None
        except ClientError as exc:
            raise fail(str(exc)) from None
    if json_file is not None:
        _export(json_file, lambda handle: handle.write(result.to_json()))
    if result.has_estimates:
        _print_result(result, lang, shares)
        if csv_file is not None:
            cells = result.rows(lang, shares_along=shares)
            _export(csv_file, lambda handle: _write_csv(handle, cells))
    console.print(coverage_table(result.raw, lang=lang))
    if not result.raw.noise:
        console.print("[bold red]Exact figures:[/] noise was switched off (testing only).")
    if result.raw.failure is not None:
        raise fail(
            f"the secure round failed ({result.raw.failure}): too few nodes stayed to the end "
            f"(threshold {result.raw.threshold}), so nothing was released"
            + (f"; {csv_file} was not written" if csv_file is not None else ""),
            EXIT_REFUSED,
        )
    if not result.quorum_met:
        c = result.coverage
        raise fail(
            f"the quorum was not met: {c.answered} of {c.total} nodes answered and "
            f"{result.raw.quorum} were needed, so there is no result"
            + (f"; {csv_file} was not written" if csv_file is not None else ""),
            EXIT_REFUSED,
        )
    if result.partial:
        c = result.coverage
        console.print(
            f"[bold yellow]Partial result:[/] {c.answered} of {c.total} nodes answered. The "
            "figures cover only the institutions that answered (see the coverage table)."
        )
