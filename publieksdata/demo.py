"""`publieksdata demo`: a whole federation on this machine, on synthetic data.

It starts an aggregator and N nodes as real uvicorn processes on loopback, each node with its own
SQLite database and a generated ticket export of a different kind of institution. The nodes join
through the real invite flow and connect out to the aggregator; the analyst then asks the
standard sector report and gets sector totals with 95% intervals and coverage.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aggregator.home import init_home as init_aggregator
from aggregator.services.tokens import Role, create_token
from aggregator.storage.db import make_async_engine, make_async_sessionmaker
from node.home import init_home as init_node
from node.identity import load_secret, load_signing_key
from node.services.admin_auth import generate_password, set_password
from node.services.joining import join
from node.storage.db import make_engine, make_sessionmaker
from protocol.query import Mode
from protocol.reports import report, year_period
from protocol.results import RoundResult
from publieksdata.processes import Service, ServiceFailed, Supervisor, free_port, start
from publieksdata.render import coverage_table, margin_table

console = Console()
MARKER = ".publieksdata-demo"
YEAR = 2025
INSTITUTIONS = (
    ("theatre", "Stadsschouwburg Noord"),
    ("museum", "Museum aan de Rivier"),
    ("cinema", "Filmhuis De Lichtbak"),
    ("festival", "Zomerfestival Oost"),
    ("library", "Openbare Bibliotheek Zuid"),
)
# The demo's processes log warnings only, unless PUBLIEKSDATA_LOG_LEVEL says otherwise.
CHILD_ENV = {"PUBLIEKSDATA_LOG_LEVEL": os.environ.get("PUBLIEKSDATA_LOG_LEVEL", "warning")}


class Lang(StrEnum):
    NL = "nl"
    EN = "en"


@dataclass
class DemoNode:
    name: str
    kind: str
    home: Path
    port: int
    admin_password: str = ""


# What the demo says as it goes, in the language of --lang (its tables follow it too).
WORDS: dict[str, tuple[str, str]] = {
    "intro": (
        "publieksdata demo: een sector van {n} instellingen op deze computer\n"
        "(synthetische gegevens; elke instelling houdt haar eigen data)",
        "publieksdata demo: a sector of {n} institutions on this computer\n"
        "(synthetic data; every institution keeps its own data)",
    ),
    "not_demo": (
        "[bold red]Fout:[/] {home} bestaat en is geen demomap",
        "[bold red]Error:[/] {home} exists and is not a demo directory",
    ),
    "error": ("[bold red]Fout:[/] {error}", "[bold red]Error:[/] {error}"),
    "created": (
        "[green]✓[/] 1. Aggregator aangemaakt in {home}",
        "[green]✓[/] 1. Aggregator created in {home}",
    ),
    "exports": (
        "2. Kassa-exports maken en importeren",
        "2. Making and importing box-office exports",
    ),
    "running": (
        "[green]✓[/] 3. Aggregator draait op {url}",
        "[green]✓[/] 3. Aggregator running at {url}",
    ),
    "joined": (
        "[green]✓[/] 4. {n} instellingen aangemeld met een eenmalige code; hun nodes maken zelf "
        "verbinding met de aggregator (er hoeft geen poort open).",
        "[green]✓[/] 4. {n} institutions joined with a one-time code; their nodes connect to the "
        "aggregator themselves (no port needs to be opened).",
    ),
    "waiting": ("5. Wachten op de antwoorden", "5. Waiting for the answers"),
    "secure": (
        "Beveiligd samengevoegd (drempel {t} van {n}): de aggregator zag alleen de som, nooit het "
        "cijfer van één instelling. Elke instelling gaf ρ = {rho} van haar privacybudget uit en "
        "voegde een deel van de ruis toe; samen is dat de ruis van één vertrouwde rekenaar, dus "
        "smallere marges (95%).",
        "Securely aggregated (threshold {t} of {n}): the aggregator saw only the sum, never one "
        "institution's figure. Every institution spent ρ = {rho} of its privacy budget and added "
        "part of the noise; together that is the noise of one trusted curator, so narrower "
        "margins (95%).",
    ),
    "independent": (
        "Elke instelling gaf ρ = {rho} van haar privacybudget uit. De marges (95%) komen van de "
        "ruis die elke instelling zelf toevoegde; bij een sectortotaal tellen die op.",
        "Every institution spent ρ = {rho} of its privacy budget. The margins (95%) come from the "
        "noise each institution added itself; in a sector total they add up.",
    ),
    "published": (
        "\n[green]✓[/] 6. Gepubliceerd voor beleidsmakers en publiek (ondertekend, met grafieken, "
        "CSV en open-datametadata):\n  [bold]{url}[/]",
        "\n[green]✓[/] 6. Published for policymakers and the public (signed, with charts, CSV and "
        "open data metadata):\n  [bold]{url}[/]",
    ),
    "done": ("\nKlaar in {s} s.", "\nDone in {s} s."),
    "stopped_one": (
        "[red]Een proces is gestopt; de federatie wordt afgesloten.[/]",
        "[red]A process stopped; shutting the federation down.[/]",
    ),
    "stopping": ("\nAlle processen stoppen …", "\nStopping every process …"),
    "all_stopped": ("Alle demoprocessen zijn gestopt.", "All demo processes have stopped."),
    "kept": (
        "\nDe publicatie blijft bewaard. Bekijk haar opnieuw met\n"
        "  publieksdata aggregator serve --home {home}\nen open {page}\n"
        "(of start de demo met --keep-running).",
        "\nThe release is kept. See it again with\n"
        "  publieksdata aggregator serve --home {home}\nand open {page}\n"
        "(or start the demo with --keep-running).",
    ),
    "up": (
        "\n[bold]De federatie blijft draaien[/] (Ctrl-C stopt alles):",
        "\n[bold]The federation keeps running[/] (Ctrl-C stops everything):",
    ),
    "site": (
        "  publieke site {url}/nl/ (English: {url}/en/)",
        "  public site  {url}/en/ (Nederlands: {url}/nl/)",
    ),
    "admin_pages": (
        "\n[bold]Beheerpagina's van de instellingen[/] (admin pages):",
        "\n[bold]The institutions' admin pages[/] (beheerpagina's):",
    ),
    "password": ("wachtwoord (password)", "password (wachtwoord)"),
    "try": ("\nProbeer als analist:", "\nTry as an analyst:"),
}


def say(lang: str, key: str, **values: object) -> str:
    nl, en = WORDS[key]
    return (en if lang == "en" else nl).format(**values)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _institution(i: int) -> tuple[str, str]:
    kind, name = INSTITUTIONS[i % len(INSTITUTIONS)]
    return kind, name if i < len(INSTITUTIONS) else f"{name} {i // len(INSTITUTIONS) + 1}"


async def _tokens(database_url: str) -> tuple[str, str]:
    engine = make_async_engine(database_url)
    try:
        async with make_async_sessionmaker(engine)() as session, session.begin():
            admin, _ = await create_token(session, "demo-beheerder", Role.ADMIN)
            analyst, _ = await create_token(session, "demo-analist", Role.ANALYST)
    finally:
        await engine.dispose()
    return admin, analyst


def _prepare_nodes(home: Path, count: int, rows: int, lang: str = "nl") -> list[DemoNode]:
    from node.ingest.generate import generate_export
    from node.ingest.importer import import_file
    from node.ingest.profile import load_profile

    nodes = []
    with _progress() as bar:
        task = bar.add_task(say(lang, "exports"), total=count)
        for i in range(count):
            kind, name = _institution(i)
            node_home = home / f"node-{i + 1}-{kind}"
            settings = init_node(node_home, f"{name} (synthetisch)")
            export = node_home / f"export-{YEAR}.csv"
            generate_export(export, kind=kind, rows=rows, seed=YEAR + i, year=YEAR)  # type: ignore[arg-type]
            engine = make_engine(settings.database_url)
            try:
                import_file(
                    make_sessionmaker(engine),
                    load_secret(settings.secret_path),
                    export,
                    load_profile("generic"),
                )
            finally:
                engine.dispose()
            export.unlink()  # the raw export is not needed once imported
            password = generate_password()
            engine = make_engine(settings.database_url)
            try:
                set_password(make_sessionmaker(engine), password)
            finally:
                engine.dispose()
            nodes.append(DemoNode(f"{name} (synthetisch)", kind, node_home, free_port(), password))
            bar.advance(task)
    return nodes


async def _join_all(url: str, admin: str, nodes: list[DemoNode]) -> None:
    from node.settings import NodeSettings

    headers = {"authorization": f"Bearer {admin}"}
    async with httpx.AsyncClient(timeout=30) as client:
        for node in nodes:
            response = await client.post(
                f"{url}/v1/admin/invites", json={"institution": node.name}, headers=headers
            )
            response.raise_for_status()
            code = response.json()["code"]
            settings = NodeSettings.load(node.home)
            engine = make_engine(settings.database_url)
            try:
                key = load_signing_key(settings.signing_key_path)
                await join(settings, make_sessionmaker(engine), key, url, code, client)
            finally:
                engine.dispose()


def _wait_connected(url: str, analyst: str, count: int, timeout: float = 40) -> None:
    headers = {"authorization": f"Bearer {analyst}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = httpx.get(f"{url}/v1/nodes", headers=headers, timeout=5).json()
        if sum(1 for n in nodes if n["connected"] and n["budget"]) >= count:
            return
        time.sleep(0.1)
    raise ServiceFailed(f"not all {count} nodes connected within {timeout:g} s")


def _ask(url: str, analyst: str, rho: float, mode: Mode, lang: str = "nl") -> RoundResult:
    """The standard report for the demo year, through the analysts' Python client."""
    from aggregator.client import Client, ClientError, PartialResultWarning

    spec = report("standard").build(period=year_period(YEAR), rho=rho, mode=mode)
    with Client(url, analyst, timeout=70) as client, _progress() as bar:
        task = bar.add_task(say(lang, "waiting"), total=None)
        try:
            with warnings.catch_warnings():  # the coverage table shows who is missing
                warnings.simplefilter("ignore", PartialResultWarning)
                result = client.ask(
                    spec,
                    deadline_seconds=60,
                    progress=lambda settled, total: bar.update(
                        task, completed=settled, total=total
                    ),
                )
        except ClientError as exc:
            raise ServiceFailed(f"the aggregator refused the round: {exc}") from None
    return result.raw


def demo_recipe(result: RoundResult) -> dict[str, object]:
    """The demo's release: the standard report's round, summed to the breakdowns policymakers
    read (visits by month, artform and age band; revenue by artform)."""
    tables = [
        ("visits-month", "visits", "month"),
        ("visits-artform", "visits", "artform"),
        ("visits-age", "visits", "age_band"),
        ("revenue-artform", "revenue", "artform"),
    ]
    return {
        "release_id": f"demo-sector-{YEAR}",
        "title": {
            "nl": f"Demosector: bezoek aan cultuur in {YEAR}",
            "en": f"Demo sector: visits to culture in {YEAR}",
        },
        "description": {
            "nl": "Synthetische gegevens van de instellingen in 'publieksdata demo'. Elke "
            "instelling hield haar eigen gegevens; de aggregator zag alleen de beveiligde som.",
            "en": "Synthetic data of the institutions in 'publieksdata demo'. Every institution "
            "kept its own data; the aggregator saw only the secure sum.",
        },
        "tables": [
            {"table_id": t, "round": result.round_id, "measure": m, "by": [by]}
            for t, m, by in tables
        ],
    }


def _publish(url: str, admin: str, result: RoundResult, lang: str) -> str:
    """Publish the demo release through the aggregator's API; the URL of its page."""
    from aggregator.client import Client, ClientError

    with Client(url, admin, timeout=60) as client:
        try:
            published = client.publish(demo_recipe(result))
        except ClientError as exc:
            raise ServiceFailed(f"the aggregator could not publish the release: {exc}") from None
    return f"{url}/{lang}/releases/{published.slug}"


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, so the processes are stopped on either."""

    def raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def demo(
    nodes: Annotated[int, typer.Option("--nodes", min=1, max=20, help="Number of nodes.")] = 5,
    rows: Annotated[int, typer.Option(min=500, help="Ticket rows per institution.")] = 40_000,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Leave the federation up until Ctrl-C.")
    ] = False,
    home: Annotated[
        Path, typer.Option(help="Directory for the demo; it is recreated on every run.")
    ] = Path("publieksdata-demo"),
    rho: Annotated[float, typer.Option(min=0.01, max=0.5, help="Privacy cost of the report.")] = (
        0.25
    ),
    lang: Annotated[
        Lang, typer.Option(help="Language of the demo's messages, progress and tables: nl or en.")
    ] = Lang.NL,
    mode: Annotated[
        Mode,
        typer.Option(
            help="secure: the aggregator sees only the sector sum (needs 2 or more nodes); "
            "independent: each node adds full noise."
        ),
    ] = Mode.SECURE,
) -> None:
    """Run a whole federation on this machine: an aggregator and N institutions' nodes as real
    processes, joined with invite codes, answering the standard sector report."""
    started = time.monotonic()
    if mode is Mode.SECURE and nodes < 2:
        raise typer.BadParameter("secure mode needs at least 2 nodes", param_hint="--mode")
    if home.exists():
        if not (home / MARKER).exists():
            console.print(say(lang, "not_demo", home=home), soft_wrap=True)
            raise typer.Exit(1)
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / MARKER).write_text("This directory is recreated by 'publieksdata demo'.\n")
    home = home.resolve()
    console.print(Panel.fit(say(lang, "intro", n=nodes)))
    aggregator = init_aggregator(home / "aggregator", "Demo-sectoraggregator")
    if nodes < aggregator.min_quorum:  # a demo with fewer nodes than a real sector allows
        with (aggregator.home / "aggregator.env").open("a", encoding="utf-8") as env:
            env.write(f"PUBLIEKSDATA_AGGREGATOR_MIN_QUORUM={nodes}\n")
    admin, analyst = asyncio.run(_tokens(aggregator.database_url))
    console.print(say(lang, "created", home=aggregator.home), soft_wrap=True)
    members = _prepare_nodes(home, nodes, rows, lang)
    with _terminate_on_sigterm(), Supervisor() as supervisor:
        try:
            url = _run(supervisor, home, aggregator.home, members, admin, analyst, rho, lang, mode)
            console.print(say(lang, "done", s=f"{time.monotonic() - started:.0f}"))
            if keep_running:
                _print_urls(url, members, analyst, home, lang)
                while all(s.alive() for s in supervisor.services):
                    time.sleep(0.5)
                console.print(say(lang, "stopped_one"))
                raise typer.Exit(1)
        except ServiceFailed as exc:
            console.print(say(lang, "error", error=exc))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.print(say(lang, "stopping"))
    console.print(say(lang, "all_stopped"))
    if not keep_running:
        page = f"http://127.0.0.1:8480/{lang}/releases/demo-sector-{YEAR}-v1"
        console.print(say(lang, "kept", home=aggregator.home, page=page), soft_wrap=True)


def _small(value: float, lang: str) -> str:
    return f"{value:g}".replace(".", ",") if lang == "nl" else f"{value:g}"


def _run(
    supervisor: Supervisor,
    home: Path,
    aggregator_home: Path,
    members: list[DemoNode],
    admin: str,
    analyst: str,
    rho: float,
    lang: str,
    mode: Mode,
) -> str:
    agg_port = free_port()
    aggregator = supervisor.add(
        start(
            "aggregator",
            ["aggregator", "serve", "--home", str(aggregator_home), "--port", str(agg_port)],
            agg_port,
            home / "logs" / "aggregator.log",
            CHILD_ENV,
        )
    )
    aggregator.wait_healthy(30)
    console.print(say(lang, "running", url=aggregator.url), soft_wrap=True)
    asyncio.run(_join_all(aggregator.url, admin, members))
    services: list[Service] = []
    for i, node in enumerate(members):
        services.append(
            supervisor.add(
                start(
                    node.name,
                    ["node", "serve", "--home", str(node.home), "--port", str(node.port)],
                    node.port,
                    home / "logs" / f"node-{i + 1}.log",
                    CHILD_ENV,
                )
            )
        )
    for service in services:
        service.wait_healthy(30)
    _wait_connected(aggregator.url, analyst, len(members))
    console.print(say(lang, "joined", n=len(members)))
    result = _ask(aggregator.url, analyst, rho, mode, lang)
    console.print()
    console.print(coverage_table(result, lang=lang))
    if not result.measures:
        raise ServiceFailed(
            f"there is no sector result ({result.failure or 'the quorum was not met'})"
        )
    console.print(margin_table(result, "month", lang=lang))
    console.print(margin_table(result, "artform", lang=lang))
    if result.mode is Mode.SECURE:
        console.print(
            say(lang, "secure", t=result.threshold, n=len(members), rho=_small(rho, lang))
        )
    else:
        console.print(say(lang, "independent", rho=_small(rho, lang)))
    release_url = _publish(aggregator.url, admin, result, lang)
    console.print(say(lang, "published", url=release_url), soft_wrap=True)
    return aggregator.url


def _print_urls(
    url: str, members: list[DemoNode], analyst: str, home: Path, lang: str = "nl"
) -> None:
    console.print(say(lang, "up"))
    console.print(f"  aggregator   {url}/docs", soft_wrap=True)
    console.print(say(lang, "site", url=url), soft_wrap=True)
    console.print(say(lang, "admin_pages"))
    for node in members:
        console.print(f"  {node.name:<40} http://127.0.0.1:{node.port}/admin/", soft_wrap=True)
        console.print(f"  {'':<40} {say(lang, 'password')}: {node.admin_password}", soft_wrap=True)
    console.print(f"  logs         {home / 'logs'}", soft_wrap=True)
    console.print(say(lang, "try"))
    console.print(f"  export PUBLIEKSDATA_AGGREGATOR_URL={url}", soft_wrap=True)
    console.print(f"  export PUBLIEKSDATA_TOKEN={analyst}", soft_wrap=True)
    console.print(f"  publieksdata ask --report reach_age --year {YEAR} --rho 0.05")
    if os.environ.get("PUBLIEKSDATA_DEMO_READY_FILE"):
        Path(os.environ["PUBLIEKSDATA_DEMO_READY_FILE"]).write_text(url, encoding="utf-8")
