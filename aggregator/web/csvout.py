"""One CSV file per release table, with the interval columns.

Columns: per dimension its code and its English label, then ``value``, ``lower``, ``upper``,
``standard_error`` and ``suppressed``, then what the figure is, the same on every row:
``measure`` (``visits``, ``persons``, …), ``unit`` (in English; for persons "visitors per
institution, summed (not deduplicated)"), ``aggregation`` (``sum_over_institutions``) and
``deduplicated`` (``false`` for persons, empty otherwise). The last row is the table's total
(code ``total``).
A suppressed cell (".") has empty value, lower and upper. Numbers are written so that they
read back to exactly the release's JSON values (integers without a decimal point, other numbers
in Python's shortest round-trip form).

``table_csv_nl`` writes the same table for Dutch spreadsheet programs (Excel with Dutch
settings opens it with a double click): the same columns and codes, Dutch labels and unit, ``;``
between fields, a decimal comma, and UTF-8 with a byte order mark so that "ë" and "–" survive.
The international file is the one to process further; it never changes.
"""

from __future__ import annotations

import csv
import io

from aggregator.releases.document import Cell, Table


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def header(table: Table) -> list[str]:
    columns = []
    for dim in table.group_by:
        columns += [dim, f"{dim}_label"]
    return [
        *columns, "value", "lower", "upper", "standard_error", "suppressed",
        "measure", "unit", "aggregation", "deduplicated",
    ]  # fmt: skip


def _row(table: Table, cell: Cell, is_total: bool, lang: str = "en") -> list[str]:
    codes: list[str] = []
    labels = cell.labels.get(lang).split(" · ")
    num = _num if lang == "en" else _num_nl
    for i, _ in enumerate(table.group_by):
        if is_total:
            total = "Total" if lang == "en" else "Totaal"
            codes += ["total" if i == 0 else "", total if i == 0 else ""]
        else:
            codes += [cell.codes[i], labels[i] if i < len(labels) else ""]
    return [
        *codes,
        num(cell.value),
        num(cell.lower),
        num(cell.upper),
        num(cell.standard_error),
        "true" if cell.suppressed else "false",
        table.measure,
        table.unit.get(lang),
        table.aggregation.value,
        "" if table.deduplicated is None else str(table.deduplicated).lower(),
    ]


def _num_nl(value: float | None) -> str:
    return _num(value).replace(".", ",")


def _write(table: Table, lang: str, delimiter: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header(table))
    for cell in table.cells:
        writer.writerow(_row(table, cell, False, lang))
    if table.total is not None:
        writer.writerow(_row(table, table.total, True, lang))
    return out.getvalue()


def table_csv(table: Table) -> bytes:
    """The international CSV: ``,`` between fields, a decimal point, English labels."""
    return _write(table, "en", ",").encode("utf-8")


def table_csv_nl(table: Table) -> bytes:
    """The CSV for Dutch Excel: ``;`` between fields, a decimal comma, Dutch labels, BOM."""
    return _write(table, "nl", ";").encode("utf-8-sig")
