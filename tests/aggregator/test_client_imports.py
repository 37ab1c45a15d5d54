"""The analyst client (aggregator/client/) depends on protocol/ only: never on the aggregator's
own modules, nor on node/, so that it runs without the service and its dependencies."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from aggregator.client.errors import _ERRORS
from aggregator.errors import ErrorCode

ROOT = Path(__file__).resolve().parent.parent.parent
CLIENT = ROOT / "aggregator" / "client"
PROJECT = {"aggregator", "bench", "node", "protocol", "publieksdata", "tests"}
# What the service needs and the client must not pull in.
SERVICE_ONLY = {"alembic", "fastapi", "jinja2", "opendp", "sqlalchemy", "starlette", "uvicorn"}


def allowed(module: str) -> bool:
    return (
        module.split(".")[0] not in PROJECT
        or module.startswith(("protocol.", "aggregator.client."))
        or module in {"protocol", "aggregator.client"}
    )


def imports_of(path: Path) -> set[str]:
    """Every module that ``path`` imports, at any depth of its code (relative imports resolved)."""
    package = "aggregator.client"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
    return found


def test_the_client_imports_only_protocol_and_itself() -> None:
    files = sorted(CLIENT.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "clients.py", "flows.py"}
    wrong = {
        f"{path.name}: {module}"
        for path in files
        for module in imports_of(path)
        if not allowed(module)
    }
    assert wrong == set()


def test_importing_the_client_loads_nothing_else_of_the_project() -> None:
    code = "import json, sys, aggregator.client; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    loaded = set(json.loads(done.stdout))
    assert "aggregator.client.clients" in loaded and "protocol.query" in loaded
    project = {m for m in loaded if m.split(".")[0] in PROJECT}
    assert {m for m in project if not allowed(m)} == {"aggregator"}  # the (empty) package
    assert (ROOT / "aggregator" / "__init__.py").read_text("utf-8").strip() == ""
    assert {m.split(".")[0] for m in loaded} & SERVICE_ONLY == set()


def test_every_problem_code_the_client_knows_is_one_the_aggregator_sends() -> None:
    assert set(_ERRORS) <= {code.value for code in ErrorCode}
