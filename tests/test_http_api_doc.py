"""docs/reference/http-api.md matches the three apps: every route, every error code with its status,
every field of the models it names, and every signed message type.

The error-code tables are generated from the catalogues; after changing ``aggregator/errors.py`` or
``node/errors.py`` or ``keyholder/errors.py``, regenerate them with::

    python -m tests.test_http_api_doc
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest
from pydantic import BaseModel

from aggregator.app import create_app as create_aggregator
from aggregator.errors import CATALOGUE as AGGREGATOR_ERRORS
from aggregator.settings import AggregatorSettings
from keyholder.app import create_app as create_keyholder
from keyholder.errors import CATALOGUE as KEYHOLDER_ERRORS
from keyholder.settings import KeyholderSettings
from node.app import create_app as create_node
from node.errors import CATALOGUE as NODE_ERRORS
from node.settings import NodeSettings
from protocol import api, messages, preview, results, sector
from protocol.signing import SIGNATURE_DOMAIN, Envelope
from tests.test_docs import test_links_resolve as check_links

ROOT = Path(__file__).resolve().parent.parent
HTTP_API = ROOT / "docs" / "reference" / "http-api.md"

# The models the page describes field by field.
MODELS: list[type[BaseModel]] = [
    Envelope,
    messages.JoinRequest,
    messages.JoinResponse,
    messages.Poll,
    messages.NodeReport,
    messages.PolicySummary,
    messages.BudgetStatus,
    messages.Task,
    messages.QueryRequest,
    messages.Refusal,
    messages.KeyRotation,
    messages.SecAggKeys,
    messages.SecAggPeer,
    messages.SecAggSetup,
    messages.SecAggShares,
    messages.SecAggMaskTask,
    messages.SecureMeasure,
    messages.SecAggMasked,
    messages.SecAggUnmaskTask,
    messages.SecAggReveal,
    api.NodeInfo,
    api.NodeBudget,
    api.RoundRequest,
    api.ReportRequest,
    api.RoundSummary,
    api.InviteRequest,
    api.InviteCreated,
    api.ReleasePlan,
    api.PlannedReport,
    api.NodeCost,
    results.RoundResult,
    results.Coverage,
    results.NodeOutcome,
    results.MeasureEstimate,
    results.RatioEstimate,
    preview.RoundPreview,
    preview.NodePreview,
    preview.MeasurePreview,
    sector.KeyholderJoinRequest,
    sector.KeyholderJoinResponse,
    sector.KeyholderInfo,
    sector.EvaluateRequest,
    sector.EvaluateResponse,
]
MESSAGE_TYPES = [
    messages.QUERY,
    messages.ANSWER,
    messages.REFUSAL,
    messages.JOIN,
    messages.POLL,
    messages.TASK,
    messages.KEY_ROTATION,
    *messages.SECAGG_TYPES,
    sector.KEYHOLDER_JOIN,
    sector.EVALUATE,
    sector.EVALUATED,
]


class _Info(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def title(self) -> str: ...


def error_table(catalogue: Mapping[Any, _Info]) -> str:
    lines = ["| code | HTTP status | title |", "|---|---:|---|"]
    for code, info in catalogue.items():
        title = info.title.replace("|", "\\|")
        lines.append(f"| `{code.value}` | {info.status} | {title} |")
    return "\n".join(lines) + "\n"


GENERATED: dict[str, Callable[[], str]] = {
    "aggregator-error-codes": lambda: error_table(AGGREGATOR_ERRORS),
    "node-error-codes": lambda: error_table(NODE_ERRORS),
    "keyholder-error-codes": lambda: error_table(KEYHOLDER_ERRORS),
}


def _region(text: str, name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->\n(.*?)<!-- {name}:end -->", text, re.S)
    if match is None:
        raise AssertionError(f"http-api.md has no region {name!r}")
    return match.group(1)


def regenerate() -> None:
    text = HTTP_API.read_text("utf-8")
    for name, render in GENERATED.items():
        start = f"<!-- {name}:start -->\n"
        text = text.replace(start + _region(text, name), start + render(), 1)
        print(f"regenerated {name} in {HTTP_API.relative_to(ROOT)}")
    HTTP_API.write_text(text, "utf-8")


def _routes(app_spec: dict[str, Any]) -> set[str]:
    return {
        f"{method.upper()} {path}"
        for path, operations in app_spec["paths"].items()
        for method in operations
    }


def _all_routes(tmp_path: Path) -> dict[str, set[str]]:
    aggregator = create_aggregator(AggregatorSettings(home=tmp_path / "aggregator"))
    node = create_node(NodeSettings(home=tmp_path / "node"))
    keyholder = create_keyholder(KeyholderSettings(home=tmp_path / "keyholder"))
    return {
        "aggregator": _routes(aggregator.openapi()),
        "node": _routes(node.openapi()),
        "keyholder": _routes(keyholder.openapi()),
    }


@pytest.mark.parametrize("name", list(GENERATED))
def test_error_tables_match_the_catalogues(name: str) -> None:
    assert _region(HTTP_API.read_text("utf-8"), name) == GENERATED[name](), (
        f"the {name} table in http-api.md is out of date; run: python -m tests.test_http_api_doc"
    )


@pytest.mark.parametrize(
    ("service", "catalogue"),
    [("aggregator", AGGREGATOR_ERRORS), ("node", NODE_ERRORS), ("keyholder", KEYHOLDER_ERRORS)],
)
def test_every_error_code_is_documented_with_its_status(
    service: str, catalogue: Mapping[Any, _Info]
) -> None:
    table = _region(HTTP_API.read_text("utf-8"), f"{service}-error-codes")
    documented = dict(re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", table, re.M))
    expected = {code.value: str(info.status) for code, info in catalogue.items()}
    assert documented == expected


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    text = HTTP_API.read_text("utf-8")
    routes = _all_routes(tmp_path)
    for service, found in routes.items():
        assert found, f"no routes found for the {service}"
        missing = sorted(route for route in found if f"`{route}`" not in text)
        assert not missing, f"http-api.md does not document the {service}'s {missing}"
    known = routes["aggregator"] | routes["node"] | routes["keyholder"]
    mentioned = set(re.findall(r"`((?:GET|POST|PUT|PATCH|DELETE) /v1/[^`\s]*)`", text))
    stale = sorted(mentioned - known)
    assert not stale, f"http-api.md documents routes that do not exist: {stale}"


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_of_the_named_models_is_documented(model: type[BaseModel]) -> None:
    text = HTTP_API.read_text("utf-8")
    assert f"`{model.__name__}`" in text, f"http-api.md no longer names {model.__name__}"
    missing = [name for name in model.model_fields if f"`{name}`" not in text]
    assert not missing, f"http-api.md does not document {model.__name__} fields {missing}"


def test_signed_messages_are_documented() -> None:
    text = HTTP_API.read_text("utf-8")
    table = text.split("| `type` | signed by |", 1)[1].split("\n\n", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", table, re.M)
    assert sorted(documented) == sorted(MESSAGE_TYPES)
    domain = SIGNATURE_DOMAIN.decode("ascii").rstrip("\n")
    assert f'b"{domain}\\n"' in text, "http-api.md does not show the signature's domain prefix"


def test_links_resolve() -> None:
    check_links(HTTP_API)


if __name__ == "__main__":
    regenerate()
