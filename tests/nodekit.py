"""Building blocks for node tests: a node home with a trusted querier, signed queries, snapshots
of the budget tables, and a real ``publieksdata node serve`` process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update

from node.home import init_home
from node.identity import load_secret, pseudonym
from node.services.answering import Answerer
from node.services.trust import trust_key
from node.settings import ENV_FILE, NodeSettings
from node.storage.db import make_engine, make_sessionmaker
from node.storage.models import AnalystBudget, BudgetPeriod, LedgerEntry, Person
from protocol.messages import QUERY, QueryRequest
from protocol.query import Measure, Period, Privacy, QuerySpec
from protocol.signing import Envelope, SigningKey, sign
from publieksdata.processes import Service, free_port, start

YEAR_2025 = Period(start=date(2025, 1, 1), end=date(2025, 12, 31))


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return json.dumps(list(value))
    return str(value)


def make_node(tmp_path: Path, db_url: str, **settings: object) -> tuple[NodeSettings, SigningKey]:
    """A node home on ``db_url`` (migrated) with ``settings`` written to its node.env, and a fresh
    querier key that the node trusts. The settings file is the one a served node reads too."""
    home = tmp_path / "home"
    init_home(home, "Testtheater", db_url)
    env_file = home / ENV_FILE
    names = {f"PUBLIEKSDATA_NODE_{name.upper()}" for name in settings}
    lines = [
        line
        for line in env_file.read_text("utf-8").splitlines()
        if line.split("=", 1)[0] not in names
    ]
    lines += [
        f"PUBLIEKSDATA_NODE_{name.upper()}={_env_value(value)}" for name, value in settings.items()
    ]
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    node_settings = NodeSettings.load(home)
    for name, value in settings.items():
        assert getattr(node_settings, name) == value, name
    querier = SigningKey.generate()
    engine = make_engine(node_settings.database_url)
    try:
        trust_key(make_sessionmaker(engine), querier.public, "test querier")
    finally:
        engine.dispose()
    return node_settings, querier


def give_identifiers(
    engine: Engine, settings: NodeSettings, identifiers: dict[int, str]
) -> dict[int, str]:
    """Replace factory persons' placeholder pseudonyms by the node's real HMAC pseudonyms of the
    given customer identifiers (as an import would). Returns person id → pseudonym."""
    secret = load_secret(settings.secret_path)
    keys = {pid: pseudonym(secret, identifier) for pid, identifier in identifiers.items()}
    with engine.begin() as conn:
        for pid, key in keys.items():
            conn.execute(update(Person).where(Person.id == pid).values(pseudonym=key))
    return keys


@contextmanager
def open_answerer(settings: NodeSettings) -> Iterator[Answerer]:
    """An Answerer with its own writer and reader engines, as the app's lifespan builds them."""
    from node.identity import load_signing_key

    writer = make_engine(settings.database_url, write=True)
    reader = make_engine(settings.database_url, write=False)
    try:
        yield Answerer(
            settings,
            make_sessionmaker(writer),
            make_sessionmaker(reader),
            load_signing_key(settings.signing_key_path),
        )
    finally:
        writer.dispose()
        reader.dispose()


def make_spec(
    query_id: str | None = None,
    *,
    rho: float = 0.05,
    group_by: tuple[str, ...] = ("artform",),
    measures: tuple[Measure, ...] = (Measure.VISITS,),
    **fields: Any,
) -> QuerySpec:
    extra: dict[str, Any] = {} if query_id is None else {"query_id": query_id}
    fields.setdefault("period", YEAR_2025)
    fields.setdefault("privacy", Privacy(rho=rho))
    return QuerySpec(group_by=group_by, measures=measures, **extra, **fields)


def request_of(spec: QuerySpec, analyst: str = "a") -> QueryRequest:
    return QueryRequest(spec=spec, analyst=analyst)


def signed_query(
    key: SigningKey, spec: QuerySpec, analyst: str = "a", *, now: datetime | None = None
) -> Envelope:
    """A signed 'query' envelope, exactly as an aggregator sends it."""
    return sign(QUERY, request_of(spec, analyst).model_dump(mode="json"), key, now=now)


def query_body(key: SigningKey, spec: QuerySpec, analyst: str = "a") -> bytes:
    return signed_query(key, spec, analyst).model_dump_json().encode("utf-8")


@dataclass(frozen=True)
class BudgetTables:
    periods: list[tuple[Any, ...]]
    analysts: list[tuple[Any, ...]]
    entries: list[tuple[Any, ...]]

    @property
    def ledger_units(self) -> int:
        return sum(row[3] for row in self.entries)


def budget_tables(engine: Engine) -> BudgetTables:
    """Every row of every budget and ledger table, for before/after comparisons."""
    with engine.connect() as conn:
        periods = [tuple(r) for r in conn.execute(select(BudgetPeriod.__table__))]
        analysts = [tuple(r) for r in conn.execute(select(AnalystBudget.__table__))]
        c = LedgerEntry.__table__.c
        entries = [
            tuple(r)
            for r in conn.execute(
                select(c.query_id, c.query_hash, c.analyst, c.rho_units, c.answer_sha256).order_by(
                    c.query_id
                )
            )
        ]
    return BudgetTables(sorted(periods), sorted(analysts), entries)


# -- real processes -----------------------------------------------------------------------------


Server = Service


def start_server(home: Path, log: Path, *, port: int | None = None, timeout: float = 20) -> Server:
    """Run ``publieksdata node serve`` as a child process and wait until /v1/health answers."""
    port = port or free_port()
    env = {"PUBLIEKSDATA_TESTING": "1", "PUBLIEKSDATA_LOG_LEVEL": "warning"}
    server = start(
        "node", ["node", "serve", "--home", str(home), "--port", str(port)], port, log, env
    )
    try:
        server.wait_healthy(timeout)
    except BaseException:
        server.kill()
        raise
    return server
