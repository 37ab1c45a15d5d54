"""GDPR access and erasure by recomputed pseudonym, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, inspect, select

from node.identity import load_secret
from node.services.gdpr import export_person, forget_person
from node.settings import NodeSettings
from node.storage.db import make_engine, make_sessionmaker
from node.storage.models import Admission, GdprRequest, Person
from tests.factories import Row, write_rows
from tests.nodekit import give_identifiers, make_node

JAN = "Jan.Jansen@Example.NL"
PIET = "123456"


@dataclass
class Node:
    settings: NodeSettings
    engine: Engine
    secret: bytes
    pseudonyms: dict[int, str]

    def export(self, identifier: str) -> dict[str, object] | None:
        return export_person(make_sessionmaker(self.engine), self.secret, identifier)

    def forget(self, identifier: str) -> int | None:
        return forget_person(make_sessionmaker(self.engine), self.secret, identifier)

    def count(self, model: type[Person] | type[Admission], person: int | None = None) -> int:
        query = select(func.count()).select_from(model)
        if person is not None:
            column = Person.id if model is Person else Admission.person_id
            query = query.where(column == person)
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    def requests(self) -> list[GdprRequest]:
        with make_sessionmaker(self.engine)() as session:
            return list(session.scalars(select(GdprRequest).order_by(GdprRequest.id)))


@pytest.fixture
def node(tmp_path: Path, db_url: str) -> Iterator[Node]:
    settings, _ = make_node(tmp_path, db_url)
    engine = make_engine(settings.database_url)
    write_rows(
        engine,
        [
            Row(1, date(2025, 3, 1), pc4="1012", segment="cdm_03", first_seen=date(2024, 1, 5)),
            Row(1, date(2025, 4, 2), artform="dance", price_cents=1750, price_type="youth_cjp"),
            Row(2, date(2025, 3, 1), pc4="3511", age_band="65plus"),
            Row(3, date(2025, 5, 1), pc4=None),
        ],
    )
    pseudonyms = give_identifiers(engine, settings, {1: JAN, 2: PIET, 3: "someone@else.nl"})
    yield Node(settings, engine, load_secret(settings.secret_path), pseudonyms)
    engine.dispose()


@pytest.mark.parametrize(
    "identifier",
    [JAN, "jan.jansen@example.nl", "  JAN.JANSEN@EXAMPLE.NL\t", "jan.jansen @example.nl"],
)
def test_export_finds_the_person_whatever_the_case_and_spacing(node: Node, identifier: str) -> None:
    data = node.export(identifier)
    assert data is not None
    assert data["person"] == {"pc4": "1012", "segment": "cdm_03", "first_seen": "2024-01-05"}
    admissions = data["admissions"]
    assert isinstance(admissions, list)
    assert [
        (a["event_date"], a["artform"], a["price_cents"], a["price_type"]) for a in admissions
    ] == [
        ("2025-03-01", "theatre", 2500, "regular"),
        ("2025-04-02", "dance", 1750, "youth_cjp"),
    ]
    assert all(a["source"] == "test" and a["status"] == "sold" for a in admissions)
    assert "never stored" in str(data["note"])
    text = repr(data)
    assert node.pseudonyms[1] not in text and "jan" not in text.lower()


def test_export_of_another_person(node: Node) -> None:
    data = node.export(PIET)
    assert data is not None
    assert data["person"] == {"pc4": "3511", "segment": "unknown", "first_seen": None}
    assert [a["age_band"] for a in data["admissions"]] == ["65plus"]  # type: ignore[attr-defined]


def test_export_of_an_unknown_identifier(node: Node) -> None:
    assert node.export("nobody@example.nl") is None
    assert node.export("jan.jansen@example.com") is None


def test_forget_deletes_only_that_person(node: Node) -> None:
    assert node.forget("  jan.jansen@EXAMPLE.nl ") == 2
    assert node.count(Person, 1) == 0 and node.count(Admission, 1) == 0
    assert node.count(Person) == 2 and node.count(Admission) == 2
    assert node.export(JAN) is None
    assert node.export(PIET) is not None
    # Forgetting again finds nothing and deletes nothing.
    assert node.forget(JAN) is None
    assert node.count(Person) == 2 and node.count(Admission) == 2


def test_forget_an_unknown_identifier(node: Node) -> None:
    assert node.forget("nobody@example.nl") is None
    assert node.count(Person) == 3 and node.count(Admission) == 4


def test_the_request_log_records_what_happened_and_nothing_else(node: Node) -> None:
    node.export(JAN)
    node.export("nobody@example.nl")
    node.forget(JAN)
    node.forget("nobody@example.nl")
    logged = [(r.action, r.found, r.admissions) for r in node.requests()]
    assert logged == [
        ("access", True, 2),
        ("access", False, 0),
        ("erasure", True, 2),
        ("erasure", False, 0),
    ]
    columns = {c["name"] for c in inspect(node.engine).get_columns("gdpr_request")}
    assert columns == {"id", "action", "at", "found", "admissions"}
    with node.engine.connect() as conn:
        rows = [tuple(map(str, row)) for row in conn.execute(select(GdprRequest.__table__))]
    stored = " ".join(" ".join(row) for row in rows).lower()
    for secret in (JAN.lower(), "nobody@example.nl", *node.pseudonyms.values()):
        assert secret not in stored
