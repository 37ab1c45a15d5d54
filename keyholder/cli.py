"""`publieksdata keyholder …`: what a key holder's operator runs.

Exit codes: 0 success; 1 error (bad input, missing or damaged files); 2 usage error.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from keyholder.home import HomeExists, init_home
from keyholder.settings import DEFAULT_HOME, KeyholderSettings
from keyholder.share import ShareFile, ShareFileError, ceremony
from keyholder.storage.db import (
    SchemaOutOfDate,
    make_sessionmaker,
    make_sync_engine,
    require_current_schema,
    upgrade,
)
from keyholder.storage.models import AuditEntry, Node, Usage
from protocol.signing import SigningKey, fingerprint

EXIT_ERROR = 1

app = typer.Typer(
    name="keyholder",
    help="Hold one share of the sector pseudonym's key: evaluate blinded requests of enrolled "
    "nodes.",
    no_args_is_help=True,
)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console(soft_wrap=True)  # codes, fingerprints and commands are copied whole
err = Console(stderr=True, soft_wrap=True)

HomeOption = Annotated[
    Path,
    typer.Option(
        "--home", envvar="PUBLIEKSDATA_KEYHOLDER_HOME", help="The key holder's home directory."
    ),
]


def fail(message: str) -> typer.Exit:
    err.print(f"[red]✗[/] {escape(message)}")
    return typer.Exit(EXIT_ERROR)


def load_settings(home: Path, **overrides: Any) -> KeyholderSettings:
    if not (home / "share.json").exists():
        raise fail(f"{home} holds no key holder; run 'publieksdata keyholder init' first")
    try:
        return KeyholderSettings.load(home, **overrides)
    except ValueError as exc:
        raise fail(f"the settings are not valid: {exc}") from None


@app.command("ceremony")
def ceremony_cmd(
    out: Annotated[Path, typer.Option(help="A new directory for the share files.")],
    threshold: Annotated[int, typer.Option(min=1, max=255, help="Shares needed (t).")] = 2,
    holders: Annotated[int, typer.Option(min=1, max=255, help="Key holders (n).")] = 3,
) -> None:
    """Generate the sector key and split it t-of-n, one share file per key holder.

    Run it once, on an offline machine, with the key holders present. The key itself is never
    written; each share-<i>.json goes to key holder i only (on its own medium), and is deleted
    here afterwards. Every file carries the same public record (key set, public key, public
    shares) for the holders to compare.
    """
    if threshold > holders:
        raise fail("the threshold cannot exceed the number of key holders")
    if threshold < 2:
        err.print(
            "[yellow]![/] With a threshold of 1, every key holder alone can compute pseudonyms."
        )
    if out.exists() and any(out.iterdir()):
        raise fail(f"{out} is not empty; choose a new directory")
    shares = ceremony(threshold, holders)
    for share in shares:
        share.write(out / f"share-{share.index}.json")
    console.print(
        f"[green]✓[/] Key set [bold]{shares[0].key_set}[/]: {threshold} of {holders} shares in "
        f"{escape(str(out))}"
    )
    console.print(f"  Public key: {shares[0].public_key}")
    console.print(
        "  Hand share-<i>.json to key holder i only; each runs 'publieksdata keyholder init "
        "--share share-<i>.json', then deletes the file. Delete this directory afterwards."
    )


@app.command()
def init(
    share: Annotated[Path, typer.Option(help="This holder's share file from the ceremony.")],
    name: Annotated[str, typer.Option(help="Your organisation, as nodes will see it.")],
    home: HomeOption = DEFAULT_HOME,
    database_url: Annotated[
        str | None, typer.Option(help="Database URL; default: SQLite in the home directory.")
    ] = None,
) -> None:
    """Create the key holder's home around its share: settings, signing key and database."""
    try:
        loaded = ShareFile.read(share)
        settings = init_home(home, loaded, name, database_url)
    except (ShareFileError, HomeExists) as exc:
        raise fail(str(exc)) from None
    key = SigningKey.from_pem(settings.signing_key_path.read_bytes())
    console.print(
        f"[green]✓[/] Key holder {escape(name)} in {escape(str(settings.home))}: share "
        f"{loaded.index} of {loaded.holders} (threshold {loaded.threshold}), key set "
        f"{loaded.key_set}."
    )
    console.print(f"  Fingerprint: {fingerprint(key.public)}")
    console.print(
        f"  Now delete {escape(str(share))}; the share lives in {escape(str(settings.share_path))}"
        " (readable by you only). Then: 'publieksdata keyholder serve'."
    )


@db_app.command("upgrade")
def db_upgrade(home: HomeOption = DEFAULT_HOME) -> None:
    """Bring the database schema up to date."""
    settings = load_settings(home)
    upgrade(settings.database_url)
    console.print("[green]✓[/] The database schema is up to date.")


def _session(settings: KeyholderSettings) -> Any:
    try:
        require_current_schema(settings.database_url)
    except (SchemaOutOfDate, SQLAlchemyError) as exc:
        raise fail(str(exc)) from None
    return make_sessionmaker(make_sync_engine(settings.database_url))


@app.command()
def invite(
    institution: Annotated[str, typer.Argument(help="The institution that will enrol its node.")],
    home: HomeOption = DEFAULT_HOME,
) -> None:
    """Create a one-time invite code for one institution's node."""
    from keyholder.services.enrolment import create_invite

    settings = load_settings(home)
    factory = _session(settings)
    with factory.begin() as session:
        code, row = create_invite(
            session,
            institution,
            datetime.now(UTC),
            timedelta(hours=settings.invite_valid_hours),
        )
        expires = row.expires_at
    key = SigningKey.from_pem(settings.signing_key_path.read_bytes())
    console.print(f"[green]✓[/] Invite for {escape(institution)}: [bold]{code}[/]")
    console.print(f"  Valid until {expires:%Y-%m-%d %H:%M} UTC, once.")
    console.print(
        "  The node runs: publieksdata node keyholders join <this address> --invite " + code
    )
    console.print(f"  Your fingerprint, to compare by phone: {fingerprint(key.public)}")


@app.command()
def remove(
    node_id: Annotated[str, typer.Argument(help="The node id, as 'status' lists it.")],
    home: HomeOption = DEFAULT_HOME,
) -> None:
    """Remove a node: its requests are refused from now on (a leaving institution)."""
    settings = load_settings(home)
    factory = _session(settings)
    with factory.begin() as session:
        node = session.get(Node, node_id)
        if node is None or node.removed_at is not None:
            raise fail(f"no enrolled node {node_id}")
        node.removed_at = datetime.now(UTC)
    console.print(f"[green]✓[/] Node {escape(node_id)} removed; a running service refuses it now.")


@app.command()
def status(home: HomeOption = DEFAULT_HOME) -> None:
    """Show the share, the enrolled nodes and their use in the current window."""
    settings = load_settings(home)
    try:
        share = ShareFile.read(settings.share_path)
    except ShareFileError as exc:
        raise fail(str(exc)) from None
    key = SigningKey.from_pem(settings.signing_key_path.read_bytes())
    console.print(
        f"Key holder {escape(settings.name)}: share {share.index} of {share.holders} "
        f"(threshold {share.threshold}), key set {share.key_set}"
    )
    console.print(f"Fingerprint: {fingerprint(key.public)}")
    console.print(
        f"Limit: {settings.rate_limit_elements:,} elements per node per "
        f"{settings.rate_window_seconds:,} s; batches of at most {settings.max_batch:,}"
    )
    factory = _session(settings)
    table = Table(title="Enrolled nodes")
    for column in ("Node", "Institution", "Joined", "Used this window", "Batches", "Refused"):
        table.add_column(column)
    now, window = datetime.now(UTC), timedelta(seconds=settings.rate_window_seconds)
    with factory() as session:
        for node in session.scalars(select(Node).order_by(Node.joined_at)):
            usage = session.get(Usage, node.id)
            if usage is not None and _aware(usage.window_start) + window <= now:
                usage = None  # that window is over
            batches = session.scalar(
                select(func.count()).where(
                    AuditEntry.node_id == node.id, AuditEntry.outcome == "evaluated"
                )
            )
            refused = session.scalar(
                select(func.count()).where(
                    AuditEntry.node_id == node.id, AuditEntry.outcome != "evaluated"
                )
            )
            table.add_row(
                node.id + (" (removed)" if node.removed_at else ""),
                escape(node.institution),
                f"{node.joined_at:%Y-%m-%d}",
                f"{usage.count:,}" if usage else "0",
                str(batches or 0),
                str(refused or 0),
            )
    console.print(table)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@app.command()
def serve(
    home: HomeOption = DEFAULT_HOME,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the key holder's API for enrolled nodes."""
    import uvicorn

    from keyholder.app import create_app
    from protocol.observability import announce, configure_logging
    from servicekit.serving import listen_overrides, log_level, uvicorn_options

    overrides = listen_overrides(host, port)
    settings = load_settings(home, **overrides)
    level = log_level()
    configure_logging(level)
    announce(f"Key holder API on http://{settings.host}:{settings.port} (docs at /docs)")
    options = uvicorn_options(
        settings.host,
        settings.port,
        level,
        proxy_headers=False,  # the app reads them, from forwarded_allow_ips only
    )
    uvicorn.run(create_app(settings), **options)
