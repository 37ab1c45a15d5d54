"""`publieksdata aggregator …`: what the sector body runs.

Exit codes: 0 success; 1 error; 2 usage error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.home import (
    HomeExists,
    KeyFileError,
    init_home,
    load_signing_key,
    rotate_signing_key,
)
from aggregator.services import enrolment, registry, tokens
from aggregator.services.tokens import Role
from aggregator.settings import DEFAULT_HOME, ENV_FILE, AggregatorSettings
from aggregator.storage.db import (
    SchemaOutOfDate,
    current_revision,
    head_revision,
    make_async_engine,
    make_async_sessionmaker,
    require_current_schema,
    upgrade,
)
from aggregator.storage.models import Node
from protocol.signing import fingerprint, public_key_from_text

EXIT_ERROR = 1
T = TypeVar("T")

app = typer.Typer(
    name="aggregator",
    help="Run the sector's aggregator: enrol institutions, hand out tokens, serve the API.",
    no_args_is_help=True,
)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for analysts and admins.", no_args_is_help=True)
app.add_typer(db_app, name="db")
keys_app = typer.Typer(help="The aggregator's signing key.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(keys_app, name="keys")

console = Console()
err = Console(stderr=True, soft_wrap=True)  # messages name paths: never hard-wrap them

HomeOption = Annotated[
    Path,
    typer.Option(
        "--home",
        envvar="PUBLIEKSDATA_AGGREGATOR_HOME",
        help="The aggregator's home directory (key, settings, SQLite database).",
    ),
]


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    err.print(f"[bold red]Error:[/] {message}")
    return typer.Exit(code)


def load_settings(home: Path, *, check_schema: bool = True, **overrides: Any) -> AggregatorSettings:
    if not (home / ENV_FILE).exists():
        raise fail(
            f"there is no aggregator in {home.resolve()}. Create one with "
            "'publieksdata aggregator init' or pass --home."
        )
    try:
        settings = AggregatorSettings.load(home, **overrides)
    except ValueError as exc:
        raise fail(f"the settings in {home / ENV_FILE} are not valid: {exc}") from None
    if check_schema:
        try:
            require_current_schema(settings.database_url)
        except SchemaOutOfDate as exc:
            raise fail(str(exc)) from None
    return settings


def in_transaction(settings: AggregatorSettings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = make_async_engine(settings.database_url)
        try:
            async with make_async_sessionmaker(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _aggregator_fingerprint(settings: AggregatorSettings) -> str:
    try:
        return fingerprint(load_signing_key(settings.signing_key_path).public)
    except KeyFileError as exc:
        raise fail(str(exc)) from None


@app.command()
def init(
    name: Annotated[str, typer.Option("--name", help="The name shown to nodes.")] = (
        "publieksdata aggregator"
    ),
    home: HomeOption = DEFAULT_HOME,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL; default: SQLite in the home directory.")
    ] = None,
) -> None:
    """Create an aggregator: signing key, settings file and database."""
    try:
        settings = init_home(home, name, database_url)
    except HomeExists as exc:
        raise fail(str(exc)) from None
    console.print(f"[green]✓[/] Aggregator [bold]{name}[/] created in {settings.home}")
    console.print(f"  Fingerprint: {_aggregator_fingerprint(settings)}")
    console.print(
        "  Next: 'publieksdata aggregator token create --role admin --name you' and "
        "'publieksdata aggregator invite --name \"Museum X\"'."
    )


@db_app.command("upgrade")
def db_upgrade(home: HomeOption = DEFAULT_HOME) -> None:
    """Bring the database schema up to date."""
    settings = load_settings(home, check_schema=False)
    upgrade(settings.database_url)
    console.print(f"[green]✓[/] Schema at version {head_revision()}")


@db_app.command("status")
def db_status(home: HomeOption = DEFAULT_HOME) -> None:
    """Show the schema version of the database."""
    settings = load_settings(home, check_schema=False)
    current, head = current_revision(settings.database_url), head_revision()
    console.print(f"Database schema: {current or 'none'}; this software needs: {head}")
    if current != head:
        raise typer.Exit(EXIT_ERROR)


@app.command()
def invite(
    name: Annotated[str, typer.Option("--name", help="The institution's name.")],
    valid_hours: Annotated[
        float | None, typer.Option(help="How long the code works (default from settings).")
    ] = None,
    home: HomeOption = DEFAULT_HOME,
) -> None:
    """Print a one-time invite code for an institution."""
    settings = load_settings(home)
    hours = settings.invite_valid_hours if valid_hours is None else valid_hours
    if not 0 < hours <= 24 * 30:
        raise fail("--valid-hours must be more than 0 and at most 720")

    async def create(session: AsyncSession) -> tuple[str, Any]:
        return await enrolment.create_invite(session, name, "cli", timedelta(hours=hours))

    code, row = in_transaction(settings, create)
    _print_invite(settings, code, name, row.expires_at)


def _print_invite(settings: AggregatorSettings, code: str, name: str, expires: datetime) -> None:
    console.print(f"Invite for [bold]{name}[/]:\n\n    [bold]{code}[/]\n")
    console.print(f"  Works once, until {expires.astimezone(UTC):%Y-%m-%d %H:%M} UTC.")
    console.print(f"  Aggregator fingerprint: {_aggregator_fingerprint(settings)}")
    console.print(
        "  The institution runs: publieksdata node join URL --invite CODE, then compares "
        "fingerprints with you ('publieksdata aggregator nodes' shows theirs)."
    )


@app.command()
def nodes(home: HomeOption = DEFAULT_HOME) -> None:
    """List enrolled nodes with their fingerprints, last contact and budget."""
    settings = load_settings(home)

    async def load(session: AsyncSession) -> tuple[list[Node], dict[str, float]]:
        return await registry.active_nodes(session), await registry.committed_since_report(session)

    rows, pending = in_transaction(settings, load)
    if not rows:
        console.print(
            "No nodes are enrolled yet. Invite one with 'publieksdata aggregator invite'."
        )
        return
    table = Table("node id", "institution", "last seen", "ρ left", "fingerprint")
    for row in rows:
        left = registry.remaining_estimate(row, pending)
        table.add_row(
            row.id,
            row.institution,
            f"{row.last_seen_at:%Y-%m-%d %H:%M}" if row.last_seen_at else "never",
            "?" if left is None else f"{left:.3g}",
            fingerprint(public_key_from_text(row.public_key)),
        )
    console.print(table)


@app.command("remove-node")
def remove_node(
    node_id: Annotated[str, typer.Argument(help="The node id (see 'nodes').")],
    home: HomeOption = DEFAULT_HOME,
) -> None:
    """Remove a node: its key stops working and it gets no new questions."""
    settings = load_settings(home)

    async def remove(session: AsyncSession) -> list[str] | None:
        return await registry.remove_node(session, node_id)

    if in_transaction(settings, remove) is None:
        raise fail(f"no enrolled node with id {node_id}")
    console.print(f"[green]✓[/] Node {node_id} removed.")


@app.command("rekey-node")
def rekey_node(
    node_id: Annotated[str, typer.Argument(help="The node id (see 'nodes').")],
    home: HomeOption = DEFAULT_HOME,
) -> None:
    """Print a one-time code with which an enrolled node replaces its key."""
    settings = load_settings(home)

    async def create(session: AsyncSession) -> tuple[str, Any] | None:
        node = await session.get(Node, node_id)
        if node is None or node.status != "active":
            return None
        valid = timedelta(hours=settings.invite_valid_hours)
        return await enrolment.create_invite(session, node.institution, "cli", valid, node_id)

    created = in_transaction(settings, create)
    if created is None:
        raise fail(f"no enrolled node with id {node_id}")
    code, row = created
    _print_invite(settings, code, row.institution, row.expires_at)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option("--name", help="Who the token is for.")],
    role: Annotated[Role, typer.Option("--role", help="analyst (ask questions) or admin.")] = (
        Role.ANALYST
    ),
    home: HomeOption = DEFAULT_HOME,
) -> None:
    """Create an API token. It is shown once; only its hash is stored."""
    settings = load_settings(home)

    async def create(session: AsyncSession) -> tuple[str, Any]:
        return await tokens.create_token(session, name, role)

    token, row = in_transaction(settings, create)
    console.print(f"[green]✓[/] {role.value} token for [bold]{name}[/] (id {row.id}):\n")
    console.print(f"    {token}\n", soft_wrap=True)
    console.print("  It is shown only now. Store it in a password manager.")


@token_app.command("list")
def token_list(home: HomeOption = DEFAULT_HOME) -> None:
    """List tokens (never the tokens themselves)."""
    settings = load_settings(home)
    rows = in_transaction(settings, tokens.list_tokens)
    table = Table("id", "name", "role", "created", "revoked")
    for row in rows:
        table.add_row(
            row.id,
            row.name,
            row.role,
            f"{row.created_at:%Y-%m-%d}",
            f"{row.revoked_at:%Y-%m-%d}" if row.revoked_at else "",
        )
    console.print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token id (see 'token list').")],
    home: HomeOption = DEFAULT_HOME,
) -> None:
    """Revoke a token; it stops working at once."""
    settings = load_settings(home)

    async def revoke(session: AsyncSession) -> bool:
        return await tokens.revoke_token(session, token_id)

    if not in_transaction(settings, revoke):
        raise fail(f"no active token with id {token_id}")
    console.print(f"[green]✓[/] Token {token_id} revoked.")


@keys_app.command("show")
def keys_show(home: HomeOption = DEFAULT_HOME) -> None:
    """Show the aggregator's key id and fingerprint."""
    settings = load_settings(home, check_schema=False)
    key = load_signing_key(settings.signing_key_path)
    console.print(f"Key id:      {key.key_id}")
    console.print(f"Fingerprint: {fingerprint(key.public)}")


@keys_app.command("rotate")
def keys_rotate(home: HomeOption = DEFAULT_HOME) -> None:
    """Replace the aggregator's signing key, then restart the aggregator.

    The old key signs a hand-over to the new key. Every node that trusts the old key receives
    that hand-over with its next poll and moves to the new key by itself; no institution has to
    do anything. The old key is kept as retired-<key id>.key.
    """
    settings = load_settings(home, check_schema=False)
    try:
        old, new = rotate_signing_key(settings)
    except KeyFileError as exc:
        raise fail(str(exc)) from None
    console.print(f"[green]✓[/] New signing key {new.key_id} (was {old.key_id}).")
    console.print(f"  Fingerprint: {fingerprint(new.public)}")
    console.print("  Restart the aggregator; nodes move to the new key at their next poll.")


@app.command()
def serve(
    home: HomeOption = DEFAULT_HOME,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the aggregator's API. Nodes connect to it; it never connects to them."""
    import uvicorn

    from aggregator.app import begin_shutdown, create_app
    from protocol.observability import announce, configure_logging
    from servicekit.serving import listen_overrides, log_level, uvicorn_options

    overrides = listen_overrides(host, port)
    settings = load_settings(home, **overrides)
    level = log_level()
    configure_logging(level)
    scheme = "https" if settings.tls_certfile is not None else "http"
    announce(f"Aggregator API on {scheme}://{settings.host}:{settings.port} (docs at /docs)")
    app = create_app(settings)

    class Server(uvicorn.Server):
        """Ends the nodes' hanging long-polls as soon as shutdown begins, so that uvicorn's
        graceful shutdown finds no request it has to cut off."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            begin_shutdown(app)
            super().handle_exit(sig, frame)

    options = uvicorn_options(
        settings.host,
        settings.port,
        level,
        proxy_headers=False,  # the app reads them, from forwarded_allow_ips only
        ssl_certfile=str(settings.tls_certfile) if settings.tls_certfile else None,
        ssl_keyfile=str(settings.tls_keyfile) if settings.tls_keyfile else None,
    )
    config = uvicorn.Config(app, **options)
    Server(config).run()
