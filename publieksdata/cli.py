"""The `publieksdata` command: `node …` for institutions, and `demo`."""

from __future__ import annotations

import typer

from node.cli import app as node_app
from publieksdata.demo import demo

app = typer.Typer(
    name="publieksdata",
    help="Federated, differentially-private audience statistics for the cultural sector.",
    no_args_is_help=True,
)
app.add_typer(node_app, name="node")
app.command()(demo)


def main() -> None:
    app()
