"""The demo's headline tables (publieksdata.render): sector totals by month and artform, and the
mean price, as a noisy merge of the standard report can give them."""

from __future__ import annotations

import io
import math

from rich.console import Console

from aggregator.merge import estimates
from protocol.query import Measure
from protocol.ratios import derived, ratio
from protocol.reports import report, year_period
from protocol.results import Z95, Coverage, NodeOutcome, NodeStatus, RoundResult
from publieksdata.render import margin_table, number, ratio_margin_table

SPEC = report("standard").build(period=year_period(2025), rho=0.25, query_id="render-test")


def noisy_round() -> RoundResult:
    """The standard report with "overig" (other) below 0 everywhere (−1 visit and −100 cents per
    cell) and February's revenue too (−100 cents per cell), with noise of 8 visits and 40,000
    cents per cell. Every other cell has 100 visits and €25 a visit."""
    cells = list(SPEC.cells())
    other = [cell[1] == "other" for cell in cells]
    cheap = [cell[0] == "2025-02" or cell[1] == "other" for cell in cells]
    values = {
        Measure.VISITS: [-1 if x else 100 for x in other],
        Measure.PERSONS: [-1 if x else 80 for x in other],
        Measure.REVENUE: [-100 if x else 250_000 for x in cheap],
    }
    variance = {Measure.VISITS: 64.0, Measure.PERSONS: 64.0, Measure.REVENUE: 40_000.0**2}
    measures = tuple(estimates(m, values[m], variance[m]) for m in SPEC.measures)
    node = NodeOutcome(node_id="n", institution="Instelling", status=NodeStatus.ANSWERED)
    return RoundResult.model_validate(
        {
            "round_id": "round-demo",
            "spec": SPEC,
            "analyst": "demo-analist",
            "state": "closed",
            "created_at": "2026-01-05T10:00:00Z",
            "deadline": "2026-01-05T10:05:00Z",
            "closed_at": "2026-01-05T10:01:00Z",
            "quorum": 1,
            "quorum_met": True,
            "partial": False,
            "coverage": Coverage(
                total=1, answered=1, refused=0, timed_out=0, invalid=0, pending=0, nodes=(node,)
            ),
            "group_by": SPEC.group_by,
            "cells": tuple(cells),
            "measures": measures,
            "ratios": derived(SPEC, measures),
        }
    )


def upper(total: float, sd: float, cells: int) -> float:
    """The upper end of a margin's 95% interval: ``cells`` cells with noise ``sd`` each."""
    return total + Z95 * sd * math.sqrt(cells)


def text(table: object) -> str:
    out = io.StringIO()
    Console(file=out, width=400).print(table)  # wide enough that no cell wraps
    plain = "".join(" " if "\u2500" <= ch <= "\u257f" else ch for ch in out.getvalue())
    return " ".join(plain.split())  # without the box-drawing characters


def test_a_negative_month_and_a_negative_artform_are_shown_as_0_and_flagged() -> None:
    result = noisy_round()
    by_month = text(margin_table(result, "month", lang="nl"))
    # February's revenue: 15 artforms × 6 age bands of −100 cents.
    euros = upper(-9_000, 40_000, 90) / 100
    assert (
        f"2025-02 8.394 (8.245 – 8.543) 0 (0 – {number(euros, ',.0f', 'nl')}) * 2025-03" in by_month
    )
    assert "2025-01 8.394 (8.245 – 8.543) 209.994 (202.556 – 217.432) 2025-02" in by_month  # nl
    assert "* Onbetrouwbaar: het 95%-interval is breder dan ±50% van de schatting" in by_month
    by_artform = text(margin_table(result, "artform", lang="en"))
    # "overig": 13 months × 6 age bands of −1 visit and −100 cents.
    visits, euros = upper(-78, 8, 78), upper(-7_800, 40_000, 78) / 100
    assert f"other 0 (0 – {visits:,.0f}) * 0 (0 – {euros:,.0f}) * unknown" in by_artform
    assert "* Unreliable: the 95% interval is wider than ±50% of the estimate" in by_artform
    for shown in (by_month, by_artform):
        assert "(-" not in shown and " -" not in shown


def test_a_negative_mean_price_is_shown_as_0_and_flagged() -> None:
    shown = text(ratio_margin_table(noisy_round(), "month", lang="en"))
    # February: −9,000 cents over 8,394 visits, about −€0.01 ± €0.89.
    mean = ratio(-9_000, 90 * 40_000.0**2, 8_394, 90 * 64.0)
    assert mean is not None and mean[0] < 0
    high = (mean[0] + Z95 * mean[1]) / 100
    assert f"2025-02 0.00 (0.00 – {high:,.2f}) * 2025-03" in shown
    assert "2025-01 25.02 (24.03 – 26.01) 2025-02" in shown
    assert "(-" not in shown and " -" not in shown
    assert "* Unreliable: the 95% interval is wider than ±50% of the estimate" in shown


def test_numbers_are_written_as_the_language_writes_them() -> None:
    assert number(1234.5, ",.1f", "nl") == "1.234,5"  # a Dutch reader reads 1,234.5 as ~1
    assert number(1234.5, ",.1f", "en") == "1,234.5"
    assert number(1_234_567, ",.0f", "nl") == "1.234.567"
