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


def _row(table: Table, cell: Cell, is_total: bool) -> list[str]:
    codes: list[str] = []
    labels = cell.labels.en.split(" · ")
    for i, _ in enumerate(table.group_by):
        if is_total:
            codes += ["total" if i == 0 else "", "Total" if i == 0 else ""]
        else:
            codes += [cell.codes[i], labels[i] if i < len(labels) else ""]
    return [
        *codes,
        _num(cell.value),
        _num(cell.lower),
        _num(cell.upper),
        _num(cell.standard_error),
        "true" if cell.suppressed else "false",
        table.measure,
        table.unit.en,
        table.aggregation.value,
        "" if table.deduplicated is None else str(table.deduplicated).lower(),
    ]


def table_csv(table: Table) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header(table))
    for cell in table.cells:
        writer.writerow(_row(table, cell, False))
    if table.total is not None:
        writer.writerow(_row(table, table.total, True))
    return out.getvalue().encode("utf-8")
