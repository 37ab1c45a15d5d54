"""The `publieksdata` command: `node …` for institutions, `aggregator …` for the sector body,
`keyholder …` for the sector pseudonym's key holders, `ask` for analysts, and `demo`."""

from __future__ import annotations

import typer

from aggregator.cli import app as aggregator_app
from keyholder.cli import app as keyholder_app
from node.cli import app as node_app
from node.keyholder_cli import app as node_keyholders_app
from publieksdata.ask import ask
from publieksdata.demo import demo
from publieksdata.releases import publish, verify_release

app = typer.Typer(
    name="publieksdata",
    help="Federated, differentially-private audience statistics for the cultural sector.",
    no_args_is_help=True,
)
node_app.add_typer(node_keyholders_app, name="keyholders")
app.add_typer(node_app, name="node")
aggregator_app.command("publish")(publish)
app.add_typer(aggregator_app, name="aggregator")
app.add_typer(keyholder_app, name="keyholder")
app.command()(demo)
app.command()(ask)
app.command("verify-release")(verify_release)


def main() -> None:
    app()
