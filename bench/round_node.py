"""A real node process for the round benchmark: ``publieksdata node serve``, timed from inside.

    python -m bench.round_node --home HOME --port PORT --timings FILE

It runs the node exactly as ``node serve`` does (same settings, app, connector, database,
OpenDP) and wraps two methods of ``node.connector.Connector`` to append one JSON line per task
to FILE: when ``handle`` started (the poll response with the task was parsed) and when
``_deliver`` started (the answer is signed and stored in the ledger; the POST starts now). Times
are ``time.monotonic()``, which on Linux is one clock for every process on the machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from node import connector

_received: dict[str, float] = {}


def instrument(timings: Path) -> None:
    handle = connector.Connector.handle
    deliver = connector.Connector._deliver

    async def timed_handle(self: connector.Connector, document: dict[str, Any]) -> None:
        _received[str(document.get("payload", {}).get("task_id", ""))] = time.monotonic()
        await handle(self, document)

    async def timed_deliver(self: connector.Connector, task: Any, body: bytes) -> None:
        ready = time.monotonic()
        line = {
            "node_key_id": self.key.key_id,
            "task_id": task.task_id,
            "round_id": task.round_id,
            "received": _received.pop(task.task_id, ready),
            "ready": ready,
        }
        with timings.open("a", encoding="utf-8") as handle_:
            handle_.write(json.dumps(line) + "\n")
        await deliver(self, task, body)

    connector.Connector.handle = timed_handle  # type: ignore[method-assign]
    connector.Connector._deliver = timed_deliver  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timings", type=Path, required=True)
    args = parser.parse_args()
    instrument(args.timings)
    from node.cli import serve

    serve(home=args.home, host=None, port=args.port)


if __name__ == "__main__":
    main()
