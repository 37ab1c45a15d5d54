"""`publieksdata node keyholders …`: enrol this node with the sector pseudonym's key holders.

Registered under ``node`` by :mod:`publieksdata.cli` (node/cli.py is long enough already).
"""

from __future__ import annotations

from typing import Annotated

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from node import keyholders
from node.cli import HomeOption, console, fail, load_settings
from node.identity import IdentityError, load_signing_key
from node.keyholders import KeyholderConfigError
from node.services.sector_enrolment import KeyholderJoinError, join
from node.settings import DEFAULT_HOME
from protocol.signing import fingerprint, public_key_from_text

app = typer.Typer(
    help="The key holders of the sector pseudonym (count each person once across the sector).",
    no_args_is_help=True,
)


@app.command("join")
def join_cmd(
    url: Annotated[str, typer.Argument(help="The key holder's address, e.g. https://kh.cbs.nl")],
    invite: Annotated[
        str, typer.Option("--invite", help="The one-time invite code you were given.")
    ],
    home: HomeOption = DEFAULT_HOME,
) -> None:
    """Enrol with one key holder. Repeat for each of them (at least the threshold, e.g. 2 of 3).

    Once the node is enrolled with key holders, every import also derives each person's sector
    pseudonym from their e-mail address; imports then need the key holders to answer.
    """
    settings = load_settings(home)
    try:
        key = load_signing_key(settings.signing_key_path)
    except IdentityError as exc:
        raise fail(str(exc)) from None
    with httpx.Client(timeout=30) as client:
        try:
            link, config = join(settings.home, settings.institution, key, url, invite, client)
        except KeyholderJoinError as exc:
            raise fail(str(exc)) from None
    console.print(
        f"[green]✓[/] Enrolled with key holder {escape(link.name)} at {escape(link.url)} "
        f"(share {link.index} of {config.holders}; key set {config.key_set})."
    )
    console.print(f"  Your node's fingerprint:       {fingerprint(key.public)}")
    console.print(
        f"  The key holder's fingerprint:  {fingerprint(public_key_from_text(link.public_key))}"
    )
    missing = config.threshold - len(config.links)
    if missing > 0:
        console.print(
            f"  [yellow]![/] Imports need {config.threshold} key holders; enrol with {missing} "
            "more before the next import."
        )


@app.command("list")
def list_cmd(home: HomeOption = DEFAULT_HOME) -> None:
    """List the key holders this node is enrolled with."""
    settings = load_settings(home)
    try:
        config = keyholders.load(settings.home)
    except KeyholderConfigError as exc:
        raise fail(str(exc)) from None
    if config is None:
        console.print("Not enrolled with any key holder: imports make no sector pseudonyms.")
        return
    table = Table(title=f"Key set {config.key_set}: {config.threshold} of {config.holders}")
    for column in ("Index", "Name", "Address", "Fingerprint"):
        table.add_column(column)
    for link in config.links:
        table.add_row(
            str(link.index),
            escape(link.name),
            escape(link.url),
            fingerprint(public_key_from_text(link.public_key)),
        )
    console.print(table)


@app.command("remove")
def remove_cmd(
    url: Annotated[str, typer.Argument(help="The key holder's address, as listed.")],
    home: HomeOption = DEFAULT_HOME,
) -> None:
    """Forget one key holder. With none left, imports make no sector pseudonyms (the ones
    stored stay until the persons are deleted)."""
    settings = load_settings(home)
    try:
        config = keyholders.remove(settings.home, url)
    except KeyholderConfigError as exc:
        raise fail(str(exc)) from None
    left = 0 if config is None else len(config.links)
    console.print(f"[green]✓[/] Removed {escape(url)}; {left} key holder(s) left.")
