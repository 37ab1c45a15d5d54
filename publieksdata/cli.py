"""The `publieksdata` command: `node …` for institutions, `aggregator …` for the sector body,
`ask` for analysts, and `demo`."""

from __future__ import annotations

import typer

from aggregator.cli import app as aggregator_app
from node.cli import app as node_app
from publieksdata.ask import ask
from publieksdata.demo import demo
from publieksdata.releases import publish, verify_release

app = typer.Typer(
    name="publieksdata",
    help="Federated, differentially-private audience statistics for the cultural sector.",
    no_args_is_help=True,
)
app.add_typer(node_app, name="node")
aggregator_app.command("publish")(publish)
app.add_typer(aggregator_app, name="aggregator")
app.command()(demo)
app.command()(ask)
app.command("verify-release")(verify_release)


def main() -> None:
    app()
