"""Secure-aggregation accuracy: the error of a sector figure in three modes (issue 4).

For N = 10, 30, 90 and 300 nodes it computes the standard deviation of the noise in one cell of a
sector table (the sum of that cell over all N nodes):

* **independent**: every node adds the full discrete-Gaussian noise σ = Δ₂/√(2ρ), so the SD is
  √N · sd(σ);
* **secure**: every node adds a share σᵢ from ``node.privacy.distributed.secure_calibrations`` with
  the default threshold t = ⌈2N/3⌉ and all N nodes respond, so the SD is √N · sd(σᵢ) (also shown:
  exactly t nodes respond, √t · sd(σᵢ));
* **curator**: one trusted party adds σ once, SD sd(σ): the best any mode can do.

sd(·) is the exact SD of the discrete Gaussian (``node.privacy.noise.noise_sd``). The target is
secure ≤ 1.25 × curator for the realistic query (setting A). For N = 10 and 30 it also draws real
OpenDP noise (``add_noise`` on zeros) and reports the empirical SDs next to the analytic ones. It
writes its section of bench/RESULTS.md and the chart docs/explanation/img/secure-accuracy.png.

    python -m bench.secure_accuracy               # table, empirical check, RESULTS.md, chart
    python -m bench.secure_accuracy --doc-table   # the tables of docs/explanation/secure-noise.md
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np

from node.privacy.distributed import secure_calibrations
from node.privacy.noise import Calibration, add_noise, noise_sd
from node.privacy.release import calibrations
from protocol.catalogue import dimension
from protocol.noise_shares import MIN_SHARE_SCALE, kls_rho, kls_tau, share_scale, worst_case_rho
from protocol.query import Bounds, Measure, Mechanism, Period, Privacy, QuerySpec
from protocol.secagg import default_threshold
from protocol.sensitivity import Sensitivity

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
CHART = ROOT / "docs" / "explanation" / "img" / "secure-accuracy.png"
BEGIN = "<!-- BEGIN secure-accuracy (written by bench/secure_accuracy.py; edit there) -->"
END = "<!-- END secure-accuracy -->"

NODES = (10, 30, 90, 300)
EMPIRICAL_NODES = (10, 30)
TARGET = 1.25
Z_CRIT = 4.89  # two-sided 1e-6: the empirical check flags only real disagreement


@dataclass(frozen=True, slots=True)
class Setting:
    key: str
    label: str
    spec: QuerySpec
    measure: Measure


def _year() -> Period:
    return Period(start=date(2025, 1, 1), end=date(2025, 12, 31))


def month_by_artform(rho: float) -> QuerySpec:
    """Visits by month (12) × artform (10) = 120 cells, the project's default bounds."""
    return QuerySpec(
        period=_year(),
        group_by=("month", "artform"),
        filters={
            "month": tuple(f"2025-{m:02d}" for m in range(1, 13)),
            "artform": dimension("artform").codes[:10],
        },
        measures=(Measure.VISITS,),
        bounds=Bounds(),
        privacy=Privacy(rho=rho),
    )


def persons_by_pc4(rho: float) -> QuerySpec:
    """Distinct persons by 4,000 PC4 areas, one area per person (Δ₂ = Δ₁ = 1)."""
    return QuerySpec(
        period=_year(),
        group_by=("pc4",),
        domains={"pc4": tuple(str(code) for code in range(1000, 5000))},
        measures=(Measure.PERSONS,),
        bounds=Bounds(max_cells_per_person=1),
        privacy=Privacy(rho=rho),
    )


SETTINGS = (
    Setting("A", "visits by month × artform (d = 120, Δ₂ = Δ₁ = 10), ρ = 0.05",
            month_by_artform(0.05), Measure.VISITS),
    Setting("B", "persons by PC4 (d = 4,000, Δ₂ = Δ₁ = 1), ρ = 0.005",
            persons_by_pc4(0.005), Measure.PERSONS),
    Setting("C", "persons by PC4 (d = 4,000, Δ₂ = Δ₁ = 1), ρ = 0.05",
            persons_by_pc4(0.05), Measure.PERSONS),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Row:
    setting: Setting
    nodes: int
    threshold: int
    rho: float
    curator_scale: float
    share_scale: float
    nominal_share: float  # Δ₂/√(2ρt), before the floor σᵢ ≥ 1 and the KLS correction
    rho_worst: float
    sd_curator: float
    sd_independent: float
    sd_secure: float  # all N respond
    sd_secure_t: float  # exactly t respond

    @property
    def secure_ratio(self) -> float:
        return self.sd_secure / self.sd_curator

    @property
    def independent_ratio(self) -> float:
        return self.sd_independent / self.sd_curator

    @property
    def floored(self) -> bool:
        """The share is at the floor σᵢ = 1, above the nominal Δ₂/√(2ρt)."""
        return self.share_scale == MIN_SHARE_SCALE and self.nominal_share < MIN_SHARE_SCALE

    @property
    def kls_raise(self) -> float:
        """How much the KLS bound raised σᵢ above max(1, nominal·(1 + 10⁻⁹)), relative."""
        start = max(MIN_SHARE_SCALE, self.nominal_share * (1 + 1e-9))
        raised = self.share_scale / start - 1
        return raised if raised > 1e-12 else 0.0


def analytic_row(setting: Setting, nodes: int) -> Row:
    spec, measure = setting.spec, setting.measure
    t = default_threshold(nodes)
    curator = calibrations(spec)[measure]
    share = secure_calibrations(spec, t)[measure]
    rho = share.rho
    sd_curator = noise_sd(Mechanism.GAUSSIAN, curator.scale)
    return Row(
        setting=setting,
        nodes=nodes,
        threshold=t,
        rho=rho,
        curator_scale=curator.scale,
        share_scale=share.scale,
        nominal_share=share.sensitivity.l2 / math.sqrt(2 * rho * t),
        rho_worst=share.rho_worst,
        sd_curator=sd_curator,
        sd_independent=math.sqrt(nodes) * sd_curator,
        sd_secure=math.sqrt(nodes) * share.noise_sd,
        sd_secure_t=math.sqrt(t) * share.noise_sd,
    )


# -- empirical: real OpenDP draws -----------------------------------------------------------------


def sector_totals(scale: float, nodes: int, draws: int) -> np.ndarray:
    """``draws`` sums over ``nodes`` nodes of one OpenDP discrete-Gaussian value each."""
    unit = Sensitivity(l1=1.0, l2=1.0)
    cal = Calibration(Mechanism.GAUSSIAN, scale, unit, rho=worst_case_rho(1.0, scale), epsilon=None)
    noise = np.array(add_noise([0] * (draws * nodes), cal), dtype=np.int64)
    return noise.reshape(draws, nodes).sum(axis=1)


@dataclass(frozen=True, slots=True)
class Empirical:
    mode: str
    analytic: float
    empirical: float
    draws: int

    @property
    def z(self) -> float:
        """z of the sample variance against the analytic one (Gaussian fourth moment)."""
        return (self.empirical**2 - self.analytic**2) / (
            self.analytic**2 * math.sqrt(2 / self.draws)
        )


def empirical_rows(row: Row, draws: int) -> list[Empirical]:
    def sd(sample: np.ndarray) -> float:
        return float(np.sqrt(np.mean(sample.astype(float) ** 2)))  # the mean is 0 by symmetry

    independent = sector_totals(row.curator_scale, row.nodes, draws)
    secure = sector_totals(row.share_scale, row.nodes, draws)
    curator = sector_totals(row.curator_scale, 1, draws)
    return [
        Empirical("independent", row.sd_independent, sd(independent), draws),
        Empirical("secure", row.sd_secure, sd(secure), draws),
        Empirical("curator", row.sd_curator, sd(curator), draws),
    ]


# -- output ---------------------------------------------------------------------------------------


def verdict(ratio: float) -> str:
    return "PASS" if ratio <= TARGET else "FAIL"


def main_table(rows: list[Row]) -> list[str]:
    lines = [
        "| setting | N | t | σ curator | σᵢ share | at floor σᵢ = 1 | KLS raise of σᵢ | "
        "SD independent | SD secure "
        "(N respond) | SD secure (t respond) | SD curator | secure / curator | "
        "independent / curator | target ≤ 1.25 |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.setting.key} | {r.nodes} | {r.threshold} | {r.curator_scale:.3f} | "
            f"{r.share_scale:.4f} | {'yes' if r.floored else 'no'} | "
            f"{f'{r.kls_raise:.1e}' if r.kls_raise else '0'} | "
            f"{r.sd_independent:.2f} | {r.sd_secure:.2f} | "
            f"{r.sd_secure_t:.2f} | {r.sd_curator:.3f} | **{r.secure_ratio:.3f}** | "
            f"{r.independent_ratio:.2f} | {verdict(r.secure_ratio)} |"
        )
    return lines


def empirical_table(results: list[tuple[Row, list[Empirical]]]) -> list[str]:
    lines = [
        "| setting | N | mode | draws | analytic SD | empirical SD | empirical / analytic | z |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row, emps in results:
        for e in emps:
            lines.append(
                f"| {row.setting.key} | {row.nodes} | {e.mode} | {e.draws:,} | {e.analytic:.2f} | "
                f"{e.empirical:.2f} | {e.empirical / e.analytic:.3f} | {e.z:+.2f} |"
            )
    return lines


def write_results(lines: list[str], path: Path = RESULTS) -> None:
    section = "\n".join([BEGIN, *lines, END])
    text = path.read_text("utf-8") if path.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, "utf-8")


def draw_chart(rows: list[Row], results: list[tuple[Row, list[Empirical]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    a_rows = [r for r in rows if r.setting.key == "A"]
    ns = [r.nodes for r in a_rows]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    lines = (
        ("independent (every node adds σ)", [r.sd_independent for r in a_rows], "o-", "C3"),
        (
            "secure (shares σᵢ, t = ⌈2N/3⌉, all N respond)",
            [r.sd_secure for r in a_rows],
            "s-",
            "C0",
        ),
        ("single trusted curator", [r.sd_curator for r in a_rows], "^-", "C2"),
    )
    for label, values, style, color in lines:
        ax.plot(ns, values, style, color=color, label=label)
    modes = {"independent": "C3", "secure": "C0", "curator": "C2"}
    for row, emps in results:
        if row.setting.key == "A":
            for e in emps:
                ax.plot(row.nodes, e.empirical, "x", color=modes[e.mode], markersize=11)
    ax.plot([], [], "x", color="black", markersize=11, label="empirical SD (real OpenDP draws)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_yticks([30, 50, 100, 200, 500], ["30", "50", "100", "200", "500"])
    ax.set_xlabel("number of nodes N")
    ax.set_ylabel("error SD of one sector cell (visits)")
    ax.set_title("Noise in a sector total: visits, ρ = 0.05, 120 cells, Δ₂ = 10")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# -- tables for docs/explanation/secure-noise.md --------------------------------------------------

# (t, σᵢ, d, Δ₂, Δ₁) at the floor σᵢ = 1 and just above it, where the KLS term is largest. The
# table starts with setting A's shares at N = 10 and N = 300 (computed, see doc_tables).
KLS_CASES = (
    (7, 1.0, 120, 1.0, 1.0),
    (20, 1.0, 4_000, 1.0, 1.0),
    (200, 1.0, 4_000, 1.0, 1.0),
    (200, 1.0, 100_000, 1.0, 1.0),
    (667, 1.0, 100_000, 1.0, 1.0),
    (200, 1.1, 100_000, 1.0, 1.0),
    (200, 1.0, 100_000, math.sqrt(10), 10.0),
)


def doc_tables() -> list[str]:
    out = ["<!-- kls-table:start -->"]
    out += [
        "| t | σᵢ | d | Δ₂ | Δ₁ | nominal ρ = Δ₂²/(2tσᵢ²) | KLS ρ | KLS / nominal − 1 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    a_shares = [analytic_row(SETTINGS[0], n) for n in (10, 300)]
    cases = [(r.threshold, r.share_scale, 120, 10.0, 10.0) for r in a_shares] + list(KLS_CASES)
    for t, s, d, l2, l1 in cases:
        nominal = l2**2 / (2 * t * s**2)
        kls = kls_rho(s, t, l2, l1, d)
        excess = f"{kls / nominal - 1:.2e}" if kls / nominal - 1 > 1e-15 else "< 10⁻¹⁵"
        out.append(
            f"| {t} | {s:.6g} | {d:,} | {l2:.4g} | {l1:g} | {nominal:.6g} | {kls:.6g} | {excess} |"
        )
    out += ["<!-- kls-table:end -->", "", "<!-- kls-scale-table:start -->"]
    out += [
        "| t | d | Δ₂ = Δ₁ | ρ | nominal σᵢ = Δ₂/√(2ρt) | share_scale σᵢ | increase |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t, d in ((7, 120), (200, 4_000), (20, 100_000), (200, 100_000), (667, 100_000)):
        rho = 1 / (2 * t)
        nominal = 1 / math.sqrt(2 * rho * t)
        scale = share_scale(1.0, 1.0, d, rho, t)
        out.append(
            f"| {t} | {d:,} | 1 | 1/{2 * t} | {nominal:.4f} | {scale:.4f} | "
            f"{(scale / nominal - 1) * 100:.2f}% |"
        )
    out += ["<!-- kls-scale-table:end -->", "", "<!-- drift-table:start -->"]
    out += [
        "| σᵢ | variance of one share | variance / σᵢ² | 10 shares: variance | nominal 10·σᵢ² |",
        "|---:|---:|---:|---:|---:|",
    ]
    for s in (0.5, 0.7, 1.0, 1.3, 2.0):
        var = noise_sd(Mechanism.GAUSSIAN, s) ** 2
        out.append(f"| {s:g} | {var:.4f} | {var / s**2:.4f} | {10 * var:.3f} | {10 * s**2:.3f} |")
    out += ["<!-- drift-table:end -->", "", "<!-- tau-table:start -->"]
    out += ["| σᵢ | τ for t = 7 | τ for t = 200 |", "|---:|---:|---:|"]
    for s in (0.5, 0.6, 0.7, 0.8, 1.0, 1.3, 2.0):
        out.append(f"| {s:g} | {kls_tau(s, 7):.3g} | {kls_tau(s, 200):.3g} |")
    out += ["<!-- tau-table:end -->", "", "<!-- nodes-table:start -->"]
    out += [
        "| setting | N | t | σᵢ | ρ (t honest) | worst-case ρ (own share only) | worst / ρ | "
        "secure / curator | independent / curator |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for setting in SETTINGS:
        if setting.key == "B":
            continue
        for n in NODES:
            r = analytic_row(setting, n)
            out.append(
                f"| {setting.key} | {n} | {r.threshold} | {r.share_scale:.4f} | {r.rho:g} | "
                f"{r.rho_worst:.4g} | {r.rho_worst / r.rho:.1f} | {r.secure_ratio:.3f} | "
                f"{r.independent_ratio:.2f} |"
            )
    out.append("<!-- nodes-table:end -->")
    return out


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=4_000, help="sector totals per mode")
    parser.add_argument("--doc-table", action="store_true", help="print the doc's tables, stop")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--no-chart", action="store_true", help="do not draw the PNG")
    args = parser.parse_args()

    if args.doc_table:
        print("\n".join(doc_tables()))
        return

    started = time.perf_counter()
    rows = [analytic_row(s, n) for s in SETTINGS for n in NODES]
    results = []
    for row in rows:
        if row.setting.key == "A" and row.nodes in EMPIRICAL_NODES:
            results.append((row, empirical_rows(row, args.draws)))
    target_rows = [r for r in rows if r.setting.key == "A"]
    overall = verdict(max(r.secure_ratio for r in target_rows))
    consistent = all(abs(e.z) < Z_CRIT for _, emps in results for e in emps)
    elapsed = time.perf_counter() - started

    command = "python -m bench.secure_accuracy" + (
        f" --draws {args.draws}" if args.draws != 4_000 else ""
    )
    lines = [
        "## Secure aggregation accuracy (issue 4)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d} with `{command}` ({elapsed:.1f} s).",
        "",
        f"* Machine: {os.cpu_count()} cores, Linux; Python {platform.python_version()}, "
        f"OpenDP {version('opendp')}.",
        "* Error SD of one cell of a sector table (the sum of that cell over N nodes), exact "
        "discrete-Gaussian SDs (`noise_sd`). *independent*: each node adds σ = Δ₂/√(2ρ); "
        "*secure*: each node adds the share σᵢ of `secure_calibrations` with t = ⌈2N/3⌉ "
        "(KLS-calibrated, σᵢ ≥ 1), all N respond (and exactly t respond); *curator*: σ once.",
        *(f"* Setting {s.key}: {s.label}." for s in SETTINGS),
        "* *at floor*: Δ₂/√(2ρt) < 1, so the share is σᵢ = 1 and the sum of shares has more "
        "noise than the target; *KLS raise*: how much the KLS bound raised σᵢ above "
        "max(1, Δ₂/√(2ρt)·(1 + 10⁻⁹)), relative.",
        "",
        *main_table(rows),
        "",
        f"**Target (setting A, secure ≤ {TARGET} × curator at every N): {overall}** "
        f"(worst ratio {max(r.secure_ratio for r in target_rows):.3f}; √(N/t) ≤ √1.5 ≈ 1.225).",
        "",
        f"Empirical check, setting A: {args.draws:,} sector totals per mode and N, each from real "
        "OpenDP draws (`add_noise` on zeros, one value per node); z compares the sample variance "
        f"with the analytic one; |z| < {Z_CRIT} in all rows: "
        f"{'yes' if consistent else 'NO'}.",
        "",
        *empirical_table(results),
        "",
        "Chart: docs/explanation/img/secure-accuracy.png (setting A; crosses: empirical SDs).",
    ]
    print("\n".join(lines))
    if not args.no_chart:
        draw_chart(rows, results, CHART)
        print(f"\nwrote {CHART.relative_to(ROOT)}")
    if not args.no_write:
        write_results(lines)
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    print(f"\n{overall}")


if __name__ == "__main__":
    main()
