"""`publieksdata node …`: what an institution's operator runs.

Exit codes: 0 success; 1 error (bad input, missing files, unreadable data); 2 usage error;
3 the node refused the query (policy or budget); 4 the import was refused (rejected rows, or
with --skip-invalid more than the allowed share of them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from node.home import HomeExists, init_home
from node.identity import IdentityError, load_secret, load_signing_key
from node.services import audit, ledger
from node.services.admin_auth import (
    PasswordTooWeak,
    check_strength,
    generate_password,
    set_password,
)
from node.services.answering import LOCAL_OPERATOR, Answered, Answerer
from node.services.gdpr import export_person, forget_person
from node.services.trust import trust_key, trusted_keys, untrust_key
from node.settings import DEFAULT_HOME, NodeSettings
from node.storage.db import (
    SchemaOutOfDate,
    current_revision,
    head_revision,
    make_engine,
    make_sessionmaker,
    require_current_schema,
    upgrade,
)
from node.view import answer_table, margin_table
from protocol.messages import QueryAnswer, QueryRequest, Refusal
from protocol.query import Mode, QuerySpec
from protocol.reports import REPORTS, report, year_period
from protocol.signing import fingerprint, public_key_from_text, public_key_to_text, verify_once

EXIT_ERROR = 1
EXIT_REFUSED = 3
EXIT_IMPORT_REFUSED = 4

app = typer.Typer(
    name="node",
    help="Run your institution's node: import audience data, answer private queries.",
    no_args_is_help=True,
)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
keys_app = typer.Typer(help="This node's key and the keys it trusts.", no_args_is_help=True)
geo_app = typer.Typer(help="The PC4 → municipality → province table.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(geo_app, name="geo")
audit_app = typer.Typer(help="The node's audit log: verify it, export it.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

console = Console()
err = Console(stderr=True, soft_wrap=True)  # messages name paths: never hard-wrap them

HomeOption = Annotated[
    Path,
    typer.Option(
        "--home",
        envvar="PUBLIEKSDATA_NODE_HOME",
        help="The node's home directory (keys, settings, SQLite database).",
    ),
]


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    # The message is plain text: "[columns]" in it is a profile section, not console markup.
    err.print(f"[bold red]Error:[/] {escape(message)}")
    return typer.Exit(code)


def load_settings(home: Path) -> NodeSettings:
    if not (home / "node.env").exists() and not (home / "secret.key").exists():
        raise fail(
            f"there is no node in {home.resolve()}. Create one with "
            "'publieksdata node init --name \"Your institution\"' or pass --home."
        )
    try:
        return NodeSettings.load(home)
    except ValueError as exc:
        raise fail(f"the settings in {home / 'node.env'} are not valid: {exc}") from None


@contextmanager
def open_db(settings: NodeSettings, *, check: bool = True) -> Iterator[tuple[Engine, Any]]:
    engine = make_engine(settings.database_url)
    try:
        if check:
            try:
                require_current_schema(engine)
            except SchemaOutOfDate as exc:
                raise fail(str(exc)) from None
        yield engine, make_sessionmaker(engine)
    finally:
        engine.dispose()


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


# -- init and database --------------------------------------------------------------------------


@app.command()
def init(
    name: Annotated[str, typer.Option("--name", help="Your institution's name.")],
    home: HomeOption = DEFAULT_HOME,
    database_url: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL; default: SQLite in the home directory."),
    ] = None,
    admin_password: Annotated[
        str | None,
        typer.Option(
            envvar="PUBLIEKSDATA_NODE_ADMIN_PASSWORD",
            help="Password for the admin pages (at least 10 characters); default: a generated "
            "one, printed once.",
        ),
    ] = None,
) -> None:
    """Create a node: secrets, signing key, settings file, database and the admin password."""
    if admin_password is not None:
        try:
            check_strength(admin_password)
        except PasswordTooWeak as exc:
            raise fail(str(exc)) from None
    try:
        settings = init_home(home, name, database_url)
    except HomeExists as exc:
        raise fail(str(exc)) from None
    key = load_signing_key(settings.signing_key_path)
    with open_db(settings) as (_, factory):
        password = admin_password or generate_password()
        set_password(factory, password)
    console.print(f"[green]✓[/] Node for [bold]{name}[/] created in {settings.home}")
    console.print(f"  Key id:      {key.key_id}")
    console.print(f"  Fingerprint: {fingerprint(key.public)}")
    console.print(
        "  Keep secret.key and signing.key safe and back them up: without secret.key, "
        "imported people can no longer be found for GDPR requests."
    )
    console.print(
        f"  Admin pages: http://{settings.host}:{settings.port}/admin/ "
        "(after 'publieksdata node serve')"
    )
    if admin_password is None:
        console.print(
            f"  Admin password: [bold]{password}[/] (shown once; change it with "
            "'publieksdata node admin-password')"
        )


@db_app.command("upgrade")
def db_upgrade(home: HomeOption = DEFAULT_HOME) -> None:
    """Bring the database schema to this version of publieksdata."""
    settings = load_settings(home)
    with open_db(settings, check=False) as (engine, _):
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    if before == after:
        console.print(f"[green]✓[/] The database is up to date (schema {after}).")
    else:
        console.print(f"[green]✓[/] Database upgraded from {before or 'empty'} to {after}.")


@db_app.command("status")
def db_status(home: HomeOption = DEFAULT_HOME) -> None:
    """Show the database schema version."""
    settings = load_settings(home)
    with open_db(settings, check=False) as (engine, _):
        current = current_revision(engine)
    head = head_revision()
    state = "up to date" if current == head else "OUT OF DATE: run 'publieksdata node db upgrade'"
    console.print(f"Schema {current or 'none'} (this version needs {head}): {state}")


# -- data ---------------------------------------------------------------------------------------


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="CSV or XLSX export from your ticketing system.")],
    profile: Annotated[str, typer.Option(help="Import profile: a built-in name or a file.")],
    home: HomeOption = DEFAULT_HOME,
    source: Annotated[
        str | None, typer.Option(help="Name of the ticketing system; default: the profile name.")
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option(help="Import the valid rows and write the rejected ones to a file.")
    ] = False,
    rejects: Annotated[
        Path | None, typer.Option(help="Where to write rejected rows (with --skip-invalid).")
    ] = None,
    default: Annotated[
        list[str] | None,
        typer.Option(help="A value for a field the file lacks, e.g. --default artform=theatre."),
    ] = None,
    max_rejected_share: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="With --skip-invalid: refuse the import when more than this share of the rows "
            "is rejected (0.05 = 5%); default: the profile's max_rejected_share, else 0.05.",
        ),
    ] = None,
) -> None:
    """Import a ticketing export. Atomic: all of it, or (on errors) nothing."""
    from node.ingest.importer import ImportRefused, ReadLimits, import_file
    from node.ingest.profile import load_profile

    settings = load_settings(home)
    defaults = _parse_defaults(default or [])
    try:
        prof = load_profile(profile)
        secret = load_secret(settings.secret_path)
    except (ValueError, IdentityError) as exc:
        raise fail(str(exc)) from None
    if skip_invalid and rejects is None:
        rejects = file.with_name(file.stem + ".rejects.csv")
    limits = ReadLimits(
        xlsx_max_unpacked_bytes=settings.import_xlsx_max_unpacked_bytes,
        xlsx_max_ratio=settings.import_xlsx_max_ratio,
        xlsx_max_rows=settings.import_xlsx_max_rows,
    )
    from node.ingest.sector import sector_pseudonymiser

    try:
        sector = sector_pseudonymiser(settings, prof.sector_kind)
    except (ValueError, IdentityError) as exc:
        raise fail(str(exc)) from None
    with open_db(settings) as (_, factory), progress_bar() as bar, sector or nullcontext():
        task = bar.add_task(f"Importing {file.name}", total=None)

        def report_progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        try:
            result = import_file(
                factory,
                secret,
                file,
                prof,
                source=source,
                skip_invalid=skip_invalid,
                rejects_path=rejects,
                defaults=defaults,
                progress=report_progress,
                max_rejected_share=max_rejected_share,
                limits=limits,
                sector=sector,
            )
        except ImportRefused as exc:
            bar.stop()
            _print_rejects(exc.report.rejects)
            if exc.report.rejects_file is not None:
                err.print(f"  Rejected rows are listed in {escape(str(exc.report.rejects_file))}")
            if exc.too_many:
                raise fail(str(exc), EXIT_IMPORT_REFUSED) from None
            raise fail(
                f"{len(exc.report.rejects)} row(s) could not be read, so nothing was imported. "
                "Fix them, or run again with --skip-invalid to import the other rows.",
                EXIT_IMPORT_REFUSED,
            ) from None
        except (ValueError, OSError) as exc:
            raise fail(str(exc)) from None
    for warning in result.warnings:
        console.print(f"[yellow]![/] {escape(warning)}")
    if result.nothing_changed:
        console.print(f"[green]✓[/] {escape(file.name)}: already imported, nothing changed.")
    else:
        console.print(
            f"[green]✓[/] {escape(file.name)}: {result.rows_read} rows read, {result.inserted} "
            f"new, {result.updated} updated, {result.unchanged} unchanged, {result.rejected} "
            "rejected."
        )
    if result.rejected and rejects is not None:
        console.print(f"  Rejected rows are listed in {escape(str(rejects))}")
    if sector is not None:
        console.print(
            f"  Sector pseudonyms: {result.sector_values} new (person, year) values from "
            f"{sector.config.threshold} of {sector.config.holders} key holders."
        )


def _parse_defaults(items: list[str]) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise fail(f"--default needs FIELD=VALUE, got {item!r}")
        defaults[key.strip()] = value.strip()
    return defaults


def _print_rejects(rejects: list[Any], limit: int = 20) -> None:
    table = Table(title="Rejected rows", show_lines=False)
    for column in ("file", "line", "column", "reason"):
        table.add_column(column)
    for item in rejects[:limit]:
        table.add_row(*(escape(v) for v in (item.file, str(item.line), item.column, item.reason)))
    err.print(table)
    if len(rejects) > limit:
        err.print(f"… and {len(rejects) - limit} more.")


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    kind: Annotated[str, typer.Option(help="theatre, museum, cinema, festival or library.")] = (
        "theatre"
    ),
    rows: Annotated[int, typer.Option(min=1, help="Number of ticket rows.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same file.")] = 1,
    year: Annotated[int, typer.Option(help="Season year.")] = 2025,
    fmt: Annotated[
        str, typer.Option("--format", help="generic, ticketmatic or eventbrite.")
    ] = "generic",
    dirty_rows: Annotated[int, typer.Option(min=0, help="Add this many broken rows.")] = 0,
) -> None:
    """Write a realistic, synthetic ticketing export (for demos, tests and benchmarks)."""
    from node.ingest.generate import generate_export

    with progress_bar() as bar:
        task = bar.add_task(f"Generating {out.name}", total=rows)
        try:
            result = generate_export(
                out,
                kind=kind,  # type: ignore[arg-type]
                rows=rows,
                seed=seed,
                year=year,
                fmt=fmt,  # type: ignore[arg-type]
                dirty_rows=dirty_rows,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        except ValueError as exc:
            raise fail(str(exc)) from None
    console.print(f"[green]✓[/] Wrote {out} ({result})")


@geo_app.command("load")
def geo_load(
    file: Annotated[Path, typer.Argument(help="CSV with pc4; municipality_code; province.")],
    home: HomeOption = DEFAULT_HOME,
) -> None:
    """Load (replace) the PC4 → municipality → province table from CBS."""
    from node.ingest.geo import load_geo_table

    settings = load_settings(home)
    with open_db(settings) as (_, factory):
        try:
            count = load_geo_table(factory, file)
        except (ValueError, OSError) as exc:
            raise fail(str(exc)) from None
    console.print(f"[green]✓[/] Loaded {count} PC4 areas.")


# -- queries ------------------------------------------------------------------------------------


@contextmanager
def _answerer(settings: NodeSettings, factory: sessionmaker[Session]) -> Iterator[Answerer]:
    try:
        key = load_signing_key(settings.signing_key_path)
    except IdentityError as exc:
        raise fail(str(exc)) from None
    reader_engine = make_engine(settings.database_url, write=False)
    try:
        yield Answerer(settings, factory, make_sessionmaker(reader_engine), key)
    finally:
        reader_engine.dispose()


def build_spec(
    report_name: str | None,
    spec_file: Path | None,
    year: int,
    rho: float | None,
    epsilon: float | None,
    codes: str | None,
) -> QuerySpec:
    if (report_name is None) == (spec_file is None):
        raise fail("give either --report NAME or --spec FILE")
    if spec_file is not None and (rho is not None or epsilon is not None or codes is not None):
        raise fail(
            "--rho, --epsilon and --codes go with --report; a spec file states its own "
            "period, privacy cost and codes"
        )
    try:
        if spec_file is not None:
            return QuerySpec.model_validate_json(spec_file.read_text("utf-8"))
        assert report_name is not None
        code_list = tuple(c.strip() for c in codes.split(",")) if codes else None
        return report(report_name).build(  # one node, answered directly: independent mode
            period=year_period(year),
            rho=rho,
            epsilon=epsilon,
            codes=code_list,
            mode=Mode.INDEPENDENT,
        )
    except OSError as exc:
        raise fail(f"cannot read {spec_file}: {exc.strerror}") from None
    except ValueError as exc:
        raise fail(f"the query is not valid:\n{exc}") from None


def ask_locally(
    settings: NodeSettings, factory: sessionmaker[Session], spec: QuerySpec, analyst: str
) -> QueryAnswer | Refusal:
    with _answerer(settings, factory) as answerer:
        outcome = answerer.answer(QueryRequest(spec=spec, analyst=analyst), LOCAL_OPERATOR)
    if isinstance(outcome, Refusal):
        return outcome
    return _decode(outcome, answerer)


def _decode(outcome: Answered, answerer: Answerer) -> QueryAnswer:
    from protocol.signing import Envelope

    envelope = Envelope.model_validate_json(outcome.body)
    payload = verify_once(envelope, "answer", answerer.key.public)
    return QueryAnswer.model_validate(payload)


@app.command()
def ask(
    home: HomeOption = DEFAULT_HOME,
    report_name: Annotated[
        str | None, typer.Option("--report", help=f"One of: {', '.join(REPORTS)}.")
    ] = None,
    spec: Annotated[Path | None, typer.Option(help="A query spec as a JSON file.")] = None,
    year: Annotated[int, typer.Option(help="Year to report on (with --report).")] = (
        date.today().year - 1
    ),
    rho: Annotated[float | None, typer.Option(help="Privacy cost (zCDP ρ).")] = None,
    epsilon: Annotated[
        float | None, typer.Option(help="Pure-DP cost ε (discrete Laplace) instead of ρ.")
    ] = None,
    codes: Annotated[
        str | None, typer.Option(help="Comma-separated codes for reports that need them.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
    lang: Annotated[str, typer.Option(help="Labels in nl or en.")] = "nl",
) -> None:
    """Ask this node a question locally. It spends budget exactly like a remote query."""
    settings = load_settings(home)
    query = build_spec(report_name, spec, year, rho, epsilon, codes)
    with open_db(settings) as (_, factory):
        outcome = ask_locally(settings, factory, query, "operator")
    if isinstance(outcome, Refusal):
        raise fail(f"refused ({outcome.reason.value}): {outcome.message}", EXIT_REFUSED)
    if as_json:
        console.print_json(outcome.model_dump_json())
        return
    console.print(answer_table(outcome, lang=lang))
    if len(outcome.group_by) > 1:
        console.print(margin_table(outcome, outcome.group_by[0], lang=lang))
    _print_budget(outcome)


def _print_budget(answer: QueryAnswer) -> None:
    b = answer.budget
    console.print(
        f"Privacy spent on this query: ρ = {answer.privacy.rho:g} "
        f"(ε = {answer.privacy.epsilon:.3g}, δ = {answer.privacy.delta:g}). "
        f"Budget {b.period}: {b.spent_rho:g} of {b.cap_rho:g} used, "
        f"{b.remaining_rho:g} left."
    )


@app.command()
def budget(home: HomeOption = DEFAULT_HOME) -> None:
    """Show the privacy budget of the current period."""
    settings = load_settings(home)
    with open_db(settings) as (_, factory):
        with _answerer(settings, factory) as answerer:
            period = answerer.budget_period()
        with factory() as session:
            state = ledger.status(session, period, settings.budget_rho)
    console.print(
        f"Budget {state.period}: ρ {state.spent_rho:g} of {state.cap_rho:g} used, "
        f"{state.remaining_rho:g} left."
    )


# -- GDPR ---------------------------------------------------------------------------------------


@app.command("export-person")
def export_person_cmd(
    identifier: Annotated[str, typer.Option(help="The customer number or e-mail address.")],
    home: HomeOption = DEFAULT_HOME,
) -> None:
    """GDPR access request: print everything stored about one person, as JSON."""
    settings = load_settings(home)
    with open_db(settings) as (_, factory):
        data = export_person(factory, load_secret(settings.secret_path), identifier)
    if data is None:
        console.print("Nothing is stored for this identifier.")
        return
    print(json.dumps(data, indent=2, ensure_ascii=False))


@app.command()
def forget(
    identifier: Annotated[str, typer.Option(help="The customer number or e-mail address.")],
    home: HomeOption = DEFAULT_HOME,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """GDPR erasure request: delete one person and all their admissions."""
    settings = load_settings(home)
    if not yes and not typer.confirm("Delete this person and all their admissions?"):
        raise typer.Exit(EXIT_ERROR)
    with open_db(settings) as (_, factory):
        count = forget_person(factory, load_secret(settings.secret_path), identifier)
    if count is None:
        console.print("Nothing is stored for this identifier; nothing was deleted.")
    else:
        console.print(f"[green]✓[/] Deleted the person and {count} admission(s).")


# -- keys ---------------------------------------------------------------------------------------


@keys_app.command("show")
def keys_show(home: HomeOption = DEFAULT_HOME) -> None:
    """Show this node's public key and fingerprint."""
    settings = load_settings(home)
    key = load_signing_key(settings.signing_key_path)
    console.print(f"Key id:      {key.key_id}")
    console.print(f"Public key:  {public_key_to_text(key.public)}")
    console.print(f"Fingerprint: {fingerprint(key.public)}")


@keys_app.command("trust")
def keys_trust(
    public_key: Annotated[str, typer.Option(help="The querier's public key (base64url).")],
    label: Annotated[str, typer.Option(help="Who this key belongs to.")],
    home: HomeOption = DEFAULT_HOME,
) -> None:
    """Allow a querier's key to send signed queries. Compare the fingerprint out of band!"""
    settings = load_settings(home)
    try:
        key = public_key_from_text(public_key)
    except ValueError as exc:
        raise fail(str(exc)) from None
    with open_db(settings) as (_, factory):
        key_id = trust_key(factory, key, label)
    console.print(f"[green]✓[/] Trusted {label} (key id {key_id}).")
    console.print(f"  Fingerprint: {fingerprint(key)}")


@keys_app.command("list")
def keys_list(home: HomeOption = DEFAULT_HOME) -> None:
    """List the keys this node trusts."""
    settings = load_settings(home)
    with open_db(settings) as (_, factory):
        keys = trusted_keys(factory)
    if not keys:
        console.print("This node trusts no querier keys yet.")
        return
    table = Table("key id", "label", "added", "fingerprint")
    for row in keys:
        table.add_row(
            row.key_id,
            row.label,
            row.added_at.date().isoformat(),
            fingerprint(public_key_from_text(row.public_key)),
        )
    console.print(table)


@keys_app.command("remove")
def keys_remove(
    key_id: Annotated[str, typer.Argument(help="Key id to stop trusting.")],
    home: HomeOption = DEFAULT_HOME,
) -> None:
    """Stop trusting a querier key."""
    settings = load_settings(home)
    with open_db(settings) as (_, factory):
        removed = untrust_key(factory, key_id)
    if not removed:
        raise fail(f"no trusted key with id {key_id}")
    console.print(f"[green]✓[/] Key {key_id} is no longer trusted.")


@keys_app.command("rotate")
def keys_rotate(home: HomeOption = DEFAULT_HOME) -> None:
    """Make a new signing key; the old one is kept as signing.key.old-<time>.

    A node that joined an aggregator announces the new key to it, signed by the old key and
    confirmed by the new one; the aggregator accepts both keys for an overlap window (24 h by
    default). Restart the node afterwards so that it signs with the new key.
    """
    import asyncio
    from datetime import UTC, datetime

    from node.identity import create_signing_key
    from node.link import load_link
    from node.services.joining import RotationError, rotate_key
    from node.transport import aggregator_client

    settings = load_settings(home)
    old = load_signing_key(settings.signing_key_path)
    if load_link(settings.home) is not None:

        async def run(factory: sessionmaker[Session]) -> Any:
            async with aggregator_client(settings, timeout=30) as client:
                return await rotate_key(settings, factory, client)

        with open_db(settings) as (_, factory):
            try:
                key, until = asyncio.run(run(factory))
            except RotationError as exc:
                raise fail(f"{exc}; the key was not changed") from None
        console.print(
            f"[green]✓[/] New signing key, announced to the aggregator (old key {old.key_id})."
        )
        console.print(f"  Key id:      {key.key_id}")
        console.print(f"  Fingerprint: {fingerprint(key.public)}")
        console.print(
            f"  The aggregator accepts the old key until {until[:19]}: restart the node "
            "('systemctl restart publieksdata-node') before then."
        )
        return
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = settings.signing_key_path.with_name(f"{settings.signing_key_path.name}.old-{stamp}")
    settings.signing_key_path.rename(backup)
    key = create_signing_key(settings.signing_key_path)
    console.print(f"[green]✓[/] New signing key (old key {old.key_id} kept in {backup.name}).")
    console.print(f"  Key id:      {key.key_id}")
    console.print(f"  Fingerprint: {fingerprint(key.public)}")
    console.print(
        "  This node has not joined an aggregator; queriers that trust the old key must trust "
        "the new one ('publieksdata node keys trust' on their side)."
    )


@app.command()
def join(
    url: Annotated[
        str, typer.Argument(help="The aggregator's address, e.g. https://agg.example.nl")
    ],
    invite: Annotated[
        str, typer.Option("--invite", help="The one-time invite code you were given.")
    ],
    home: HomeOption = DEFAULT_HOME,
) -> None:
    """Join an aggregator with a one-time invite code.

    Your node connects out to the aggregator; nothing needs to connect in, so no firewall port has
    to be opened. Compare both fingerprints with the aggregator operator (by phone, say).
    """
    import asyncio

    from node.services.joining import JoinError
    from node.services.joining import join as join_aggregator
    from node.transport import aggregator_client

    settings = load_settings(home)
    key = load_signing_key(settings.signing_key_path)

    async def run(factory: sessionmaker[Session]) -> Any:
        async with aggregator_client(settings, timeout=30) as client:
            return await join_aggregator(settings, factory, key, url, invite, client)

    with open_db(settings) as (_, factory):
        try:
            link = asyncio.run(run(factory))
        except JoinError as exc:
            raise fail(str(exc)) from None
    console.print(
        f"[green]✓[/] Joined {link.base} as [bold]{link.institution}[/] ({link.node_id})."
    )
    console.print(f"  Your node's fingerprint:       {fingerprint(key.public)}")
    console.print(
        f"  The aggregator's fingerprint:  {fingerprint(public_key_from_text(link.aggregator_key))}"
    )
    console.print(
        "  Compare both with the aggregator operator before you rely on the link. "
        "Then run 'publieksdata node serve': it connects out and answers the aggregator."
    )


@app.command()
def profiles() -> None:
    """List the built-in import profiles."""
    from node.ingest.profile import list_builtin_profiles

    table = Table("profile", "description")
    for name, description in list_builtin_profiles():
        table.add_row(name, description)
    console.print(table)


# -- serve --------------------------------------------------------------------------------------


@app.command()
def serve(
    home: HomeOption = DEFAULT_HOME,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the node's API (localhost only unless you say otherwise)."""
    import uvicorn

    from node.app import create_app
    from protocol.observability import announce, configure_logging
    from servicekit.serving import listen_overrides, log_level, uvicorn_options

    overrides = listen_overrides(host, port)
    settings = load_settings(home)
    if overrides:
        settings = NodeSettings.load(home, **overrides)
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"[yellow]Warning:[/] listening on {settings.host}: the node's API is reachable "
            "from other machines. Nodes normally only need localhost."
        )
    with open_db(settings):
        pass  # fail early with a clear message when the schema is out of date
    from node.link import load_link

    level = log_level()
    configure_logging(level)
    announce(f"Node API on http://{settings.host}:{settings.port} (docs at /docs)")
    if settings.admin_enabled:
        announce(f"Admin pages on http://{settings.host}:{settings.port}/admin/")
    link = load_link(settings.home)
    if link is not None and settings.connect:
        from node.transport import InsecureAggregatorURL, check_aggregator_url

        try:
            check_aggregator_url(link.base, settings)
        except InsecureAggregatorURL as exc:
            raise fail(str(exc)) from None
        announce(f"Connecting out to the aggregator at {link.base}")
    uvicorn.run(create_app(settings), **uvicorn_options(settings.host, settings.port, level))


# -- admin pages, audit log, retention ------------------------------------------------------------


@app.command("admin-password")
def admin_password_cmd(
    home: HomeOption = DEFAULT_HOME,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="PUBLIEKSDATA_NODE_ADMIN_PASSWORD",
            help="The new password; default: asked for (hidden), or generated with --generate.",
        ),
    ] = None,
    generate: Annotated[
        bool, typer.Option("--generate", help="Generate a password and print it once.")
    ] = False,
) -> None:
    """Set the password of the admin pages. Logs every browser out."""
    settings = load_settings(home)
    if password is None:
        if generate:
            password = generate_password()
        else:
            password = typer.prompt("New admin password", hide_input=True, confirmation_prompt=True)
    try:
        check_strength(password)
    except PasswordTooWeak as exc:
        raise fail(str(exc)) from None
    with open_db(settings) as (_, factory):
        set_password(factory, password)
    console.print("[green]✓[/] The admin password was changed; every session was logged out.")
    if generate:
        console.print(f"  New password: [bold]{password}[/] (shown once)")


@audit_app.command("verify")
def audit_verify(home: HomeOption = DEFAULT_HOME) -> None:
    """Recompute the audit log's hash chain and check it against the ledger."""
    settings = load_settings(home)
    with open_db(settings) as (_, factory), factory() as session:
        result = audit.verify(session)
    if result.ok:
        console.print(
            f"[green]✓[/] The audit log is intact: {result.events} events; every answer in the "
            "ledger is in it."
        )
        console.print(f"  Head hash: {result.head_hash}")
        console.print("  Keep the head hash elsewhere: a later check can then show a rewrite.")
        return
    for problem in result.problems[:50]:
        err.print(f"[red]✗[/] {problem}")
    if len(result.problems) > 50:
        err.print(f"… and {len(result.problems) - 50} more")
    raise fail(f"the audit log does not add up ({len(result.problems)} problem(s))")


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Option("--out", help="CSV file to write.")],
    home: HomeOption = DEFAULT_HOME,
    lang: Annotated[str, typer.Option(help="Describe queries in nl or en.")] = "nl",
) -> None:
    """Export the whole audit log as CSV (oldest first)."""
    from node.web.i18n import describe

    settings = load_settings(home)
    with open_db(settings) as (_, factory), factory() as session:
        chunks = audit.export_csv(session, lambda data: describe(data.get("query"), lang))
        try:
            with out.open("w", encoding="utf-8", newline="") as handle:
                rows = -1
                for chunk in chunks:
                    handle.write(chunk)
                    rows += 1
        except OSError as exc:
            raise fail(f"cannot write {out}: {exc.strerror}") from None
    console.print(f"[green]✓[/] {rows} events written to {out}")


@app.command()
def retention(home: HomeOption = DEFAULT_HOME) -> None:
    """Apply the retention period now (the running node does this daily)."""
    from node.services.retention import apply_retention

    settings = load_settings(home)
    if settings.retention_days is None:
        raise fail("no retention period is set (PUBLIEKSDATA_NODE_RETENTION_DAYS in node.env)")
    with open_db(settings) as (_, factory):
        done = apply_retention(factory, settings.retention_days)
    console.print(
        f"[green]✓[/] Deleted {done.admissions} admissions from before {done.cutoff} and "
        f"{done.persons} persons left without any."
    )


@app.command("backup")
def backup_cmd(
    out: Annotated[Path, typer.Option("--out", help="A new directory to write the backup to.")],
    home: HomeOption = DEFAULT_HOME,
) -> None:
    """Back the node up: settings, keys and a consistent copy of the database."""
    from node.services.backup import BackupError, backup

    settings = load_settings(home)
    with open_db(settings) as (engine, _):
        try:
            manifest = backup(settings, engine, out)
        except (BackupError, OSError) as exc:
            raise fail(str(exc)) from None
    console.print(f"[green]✓[/] Backup written to {out} ({manifest.database}).")
    for period, spent in sorted(manifest.spent.items()):
        console.print(f"  Budget spent in {period}: ρ = {spent:g}")
    console.print(
        "  It holds the node's secret keys: keep it as safe as the node itself. Restore with "
        "'publieksdata node restore --from DIR' (docs/how-to/back-up-a-node.md)."
    )


@app.command("restore")
def restore_cmd(
    source: Annotated[Path, typer.Option("--from", help="The backup directory.")],
    home: HomeOption = DEFAULT_HOME,
) -> None:
    """Restore a backup into the node's home. Stop the node first."""
    import shutil

    from node.services.backup import BackupError, read_manifest, restore
    from node.settings import ENV_FILE

    try:
        read_manifest(source)
    except BackupError as exc:
        raise fail(str(exc)) from None
    if not (home / ENV_FILE).exists():  # restoring onto a new machine: start from its settings
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / ENV_FILE, home / ENV_FILE)
    settings = load_settings(home)
    engine = make_engine(settings.database_url)
    try:
        manifest = restore(settings, engine, source)
    except (BackupError, OSError) as exc:
        raise fail(str(exc)) from None
    finally:
        engine.dispose()
    console.print(f"[green]✓[/] Restored the backup of {manifest.created_at[:19]} into {home}.")
    if manifest.joined:
        console.print(
            "  The node answers nothing until its aggregator has confirmed how much budget it "
            "had spent (at its first connection after 'publieksdata node serve'), so no budget "
            "spent after the backup can be spent again."
        )
    else:
        err.print(
            "[yellow]Warning:[/] this node has not joined an aggregator, so nothing can confirm "
            "its budget. Answers it released after the backup are not in the restored ledger."
        )
    with open_db(settings, check=False) as (engine2, _):
        try:
            require_current_schema(engine2)
        except SchemaOutOfDate:
            console.print("  The backup has an older schema: run 'publieksdata node db upgrade'.")
