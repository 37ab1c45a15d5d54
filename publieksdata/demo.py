"""`publieksdata demo`: a whole node round trip on synthetic data, in a throwaway directory."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel

from node import cli as node_cli
from node.home import init_home
from node.identity import load_secret
from node.view import answer_table, margin_table
from protocol.messages import Refusal
from protocol.reports import report, year_period

console = Console()
MARKER = ".publieksdata-demo"


def demo(
    home: Annotated[
        Path, typer.Option(help="Directory for the demo node; it is recreated on every run.")
    ] = Path("publieksdata-demo"),
    rows: Annotated[int, typer.Option(min=1_000, help="Ticket rows to generate.")] = 60_000,
    lang: Annotated[str, typer.Option(help="Labels in nl or en.")] = "nl",
) -> None:
    """Generate a theatre's ticket export, import it into a fresh node and ask it questions."""
    from node.ingest.generate import generate_export
    from node.ingest.importer import import_file
    from node.ingest.profile import load_profile

    if home.exists():
        if not (home / MARKER).exists():
            raise node_cli.fail(f"{home} exists and is not a demo directory; choose another --home")
        shutil.rmtree(home)
    console.print(Panel.fit("publieksdata demo: one institution's node, on synthetic data"))
    settings = init_home(home, "Demotheater (synthetisch)")
    (home / MARKER).write_text("This directory is recreated by 'publieksdata demo'.\n")
    console.print(f"[green]✓[/] 1. Created a node in {settings.home}")

    export = home / "kassa-export-2025.csv"
    with node_cli.progress_bar() as bar:
        task = bar.add_task("2. Generating a ticket export", total=rows)
        generate_export(
            export,
            kind="theatre",
            rows=rows,
            seed=2025,
            year=2025,
            dirty_rows=3,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    rejects = home / "kassa-export-2025.rejects.csv"
    with node_cli.open_db(settings) as (_, factory):
        with node_cli.progress_bar() as bar:
            task = bar.add_task("3. Importing it", total=None)
            result = import_file(
                factory,
                load_secret(settings.secret_path),
                export,
                load_profile("generic"),
                skip_invalid=True,
                rejects_path=rejects,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        console.print(
            f"   {result.inserted} tickets imported; {result.rejected} broken rows skipped "
            f"(reasons in {rejects.name}). Names, e-mail addresses and full postcodes were "
            "dropped; people are kept only as keyed pseudonyms."
        )

        console.print("\n4. The standard report, answered with differential privacy:")
        spec = report("standard").build(period=year_period(2025), rho=0.25)
        answer = node_cli.ask_locally(settings, factory, spec, "demo")
        if isinstance(answer, Refusal):  # pragma: no cover - a fresh node has its whole budget
            raise node_cli.fail(answer.message, node_cli.EXIT_REFUSED)
        console.print(margin_table(answer, "month", lang=lang))
        console.print(margin_table(answer, "artform", lang=lang))

        console.print("\n5. Reach: how many different people, per age band:")
        reach = report("reach_age").build(period=year_period(2025), rho=0.1)
        reach_answer = node_cli.ask_locally(settings, factory, reach, "demo")
        if isinstance(reach_answer, Refusal):  # pragma: no cover
            raise node_cli.fail(reach_answer.message, node_cli.EXIT_REFUSED)
        console.print(answer_table(reach_answer, lang=lang))

    spent = reach_answer.budget
    console.print(
        f"\n[bold]Privacy budget {spent.period}:[/] ρ {spent.spent_rho:g} of {spent.cap_rho:g} "
        f"spent ({spent.spent_rho / spent.cap_rho:.0%}), {spent.remaining_rho:g} left. "
        "Each ± is a 95% margin from the added noise."
    )
    console.print(
        f"Try more: publieksdata node ask --home {home} --report frequency --year 2025 --rho 0.05"
    )
