"""Importing exports end to end, on SQLite and PostgreSQL: every profile, Dutch conventions,
rejects, atomicity, idempotency and later status changes."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from node.identity import pseudonym, ticket_ref
from node.ingest import importer, stream
from node.ingest.errors import ImportRefused, UnreadableFile
from node.ingest.generate import generate_export
from node.ingest.importer import import_file
from node.ingest.profile import load_profile, parse_profile
from node.ingest.report import ImportReport
from node.ingest.writer import AdmissionWriter
from node.storage.db import make_sessionmaker
from node.storage.models import Admission, Base, Event, ImportBatch, Person

SECRET = b"k" * 32
HEADER = (
    "ticket_id;order_id;customer_id;email;first_name;last_name;phone;street;postcode;"
    "birth_date;event_id;event_title;production;artform;venue;hall;event_start;capacity;"
    "is_free;ordered_at;price;price_type;channel;status;attended;segment"
)


def generic_row(ticket: str, **values: str) -> str:
    """One row of the generic format; unnamed columns get plausible values."""
    row = {
        "ticket_id": ticket,
        "order_id": f"O-{ticket}",
        "customer_id": "100001",
        "email": "klant100001@voorbeeld.nl",
        "first_name": "Zoë",
        "last_name": "Voorbeeld",
        "phone": "06-00001234",
        "street": "Voorbeeldstraat 1",
        "postcode": "3512 AB",
        "birth_date": "15-03-1980",
        "event_id": "E1",
        "event_title": "Hamlet",
        "production": "Hamlet",
        "artform": "toneel",
        "venue": "Schouwburg",
        "hall": "Grote zaal",
        "event_start": "14-03-2025 20:15",
        "capacity": "850",
        "is_free": "nee",
        "ordered_at": "01-03-2025 10:00",
        "price": "27,50",
        "price_type": "regulier",
        "channel": "online",
        "status": "verkocht",
        "attended": "ja",
        "segment": "cdm_03",
    }
    row.update(values)
    return ";".join(row[name] for name in HEADER.split(";"))


def write(path: Path, *rows: str, encoding: str = "utf-8-sig") -> Path:
    path.write_text("\n".join((HEADER, *rows)) + "\n", encoding=encoding)
    return path


def factory_of(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order."""
    with engine.connect() as conn:
        return {
            name: [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key))]
            for name, table in Base.metadata.tables.items()
        }


def admissions(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(Admission.__table__).order_by(Admission.id)))


def persons(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(Person.__table__).order_by(Person.id)))


def by_ticket(engine: Engine, *tickets: str, source: str = "generic") -> list[Any]:
    """The admissions of these ticket ids, in this order."""
    stored = {a.ticket_ref: a for a in admissions(engine)}
    return [stored[ticket_ref(SECRET, source, t)] for t in tickets]


def run(engine: Engine, path: Path, profile: str = "generic", **options: Any) -> ImportReport:
    return import_file(factory_of(engine), SECRET, path, load_profile(profile), **options)


# -- every profile ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "kind"), [("generic", "theatre"), ("ticketmatic", "cinema"), ("eventbrite", "museum")]
)
def test_every_profile_imports_its_generated_file(
    engine: Engine, tmp_path: Path, fmt: Any, kind: Any
) -> None:
    path = tmp_path / f"{fmt}.csv"
    made = generate_export(path, kind=kind, rows=1500, seed=3, fmt=fmt, dirty_rows=20)
    report = run(engine, path, fmt, skip_invalid=True, defaults={"artform": "visual_arts"}
                 if fmt == "eventbrite" else None)  # fmt: skip
    assert report.rows_read == 1500
    assert report.rejected == made.expected_rejects
    assert report.inserted == 1500 - made.expected_rejects
    assert report.rejects_file == tmp_path / f"{fmt}.rejects.csv"
    assert report.rejects_file.exists()
    stored = admissions(engine)
    assert len(stored) == report.inserted
    assert {a.status for a in stored} <= {"sold", "refunded", "cancelled"}
    assert sum(a.age_band != "unknown" for a in stored) > len(stored) // 2
    assert sum(a.lead_time != "unknown" for a in stored) > len(stored) * 0.9
    assert len({a.price_type for a in stored}) >= 4
    if fmt == "eventbrite":
        assert {a.artform for a in stored} == {"visual_arts"}
        assert {a.channel for a in stored} == {"online"}
    assert any("Superkorting" in w for w in report.warnings)
    with factory_of(engine)() as session:
        batch = session.scalars(select(ImportBatch)).one()
    assert (batch.file_name, batch.rows_read, batch.rows_rejected) == (path.name, 1500,
                                                                       report.rejected)  # fmt: skip
    assert batch.file_sha256 == made.sha256 == report.file_sha256


# -- Dutch conventions -----------------------------------------------------------------------------


def test_windows_1252_semicolons_decimal_commas_and_dd_mm_yyyy(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "kassa.csv",
        generic_row("T1", event_title="Café Noir", price="1.234,50", first_name="José"),
        generic_row("T2", event_title="Café Noir", price="€ 12,-", last_name="Anaïs Zoë"),
        encoding="cp1252",
    )
    report = run(engine, path)
    assert report.inserted == 2
    with factory_of(engine)() as session:
        event = session.scalars(select(Event)).one()
    assert event.title == "Café Noir"
    assert event.starts_at == datetime(2025, 3, 14, 20, 15)
    assert [a.price_cents for a in admissions(engine)] == [123450, 1200]


def test_utf8_without_bom_and_comma_separated_files_are_detected(
    engine: Engine, tmp_path: Path
) -> None:
    rows = [generic_row("T1", price="12.50"), generic_row("T2", price="8")]
    text = "\n".join([HEADER, *rows]).replace(";", ",").replace("12.50", '"12,50"')
    path = tmp_path / "komma.csv"
    path.write_text(text, "utf-8")
    assert run(engine, path).inserted == 2
    assert sorted(a.price_cents for a in admissions(engine)) == [800, 1250]


def test_an_xlsx_export(engine: Engine, tmp_path: Path) -> None:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    header = HEADER.split(";")
    sheet.append(header)
    values = generic_row("T1").split(";")
    good = dict(zip(header, values, strict=True))
    good.update(
        customer_id=100001, event_start=datetime(2025, 3, 14, 20, 15), price=27.5, capacity=850
    )
    sheet.append([good[h] for h in header])
    sheet.append([None] * len(header))  # an empty row: skipped, but it keeps its number
    bad = dict(good, ticket_id="T2", price="12,5x")
    sheet.append([bad[h] for h in header])
    path = tmp_path / "kassa.xlsx"
    workbook.save(path)
    with pytest.raises(ImportRefused) as refused:
        run(engine, path)
    (reject,) = refused.value.report.rejects
    assert (reject.file, reject.line, reject.column) == ("kassa.xlsx", 4, "U (price)")
    assert reject.reason.startswith("'12,5x' is not an amount")
    report = run(engine, path, skip_invalid=True, max_rejected_share=0.5)
    assert report.inserted == 1
    (admission,) = admissions(engine)
    assert admission.price_cents == 2750
    assert admission.event_date == date(2025, 3, 14)


# -- rejects ---------------------------------------------------------------------------------------


def test_rejects_name_file_line_and_column_also_after_a_multi_line_value(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "kassa.csv",
        generic_row("T1", event_title='"Een titel\nover drie\nregels"'),
        generic_row("T2", price="12,5x"),
        generic_row("T3", ordered_at="31-02-2025 10:00"),
        generic_row("", customer_id=""),
        generic_row("T5", customer_id="", email=""),
        generic_row("T6", status="zoek"),
        generic_row("T7", event_start="14-13-2025 20:15", event_id="E2"),
        generic_row("T1"),
        generic_row("T9", postcode="12AB 34", birth_date="31-31-1990", price_type="Superkorting"),
    )
    with pytest.raises(ImportRefused) as refused:
        run(engine, path)
    found = [str(r) for r in refused.value.report.rejects]
    assert found == [
        "kassa.csv, line 5, column 'price': '12,5x' is not an amount (expected a decimal "
        "comma, e.g. 12,50 or 1.234,50)",
        "kassa.csv, line 6, column 'ordered_at': '31-02-2025' is not a date (expected e.g. "
        "31-12-2025 or 2025-12-31)",
        "kassa.csv, line 7, column 'ticket_id': the ticket id is empty",
        "kassa.csv, line 8, column 'customer_id / email': no customer identifier: the customer "
        "column(s) are empty",
        "kassa.csv, line 9, column 'status': 'zoek' is not a known status; map it to sold, "
        "refunded or cancelled in the profile's [values.status]",
        "kassa.csv, line 10, column 'event_start': '14-13-2025 20:15' is not a date (expected "
        "e.g. 31-12-2025 or 2025-12-31)",
        "kassa.csv, line 11, column 'ticket_id': the same ticket id already appears on line 2",
    ]
    report = refused.value.report
    assert (report.rows_read, report.rejected, report.inserted) == (9, 7, 0)
    assert any("'Superkorting' (1)" in w for w in report.warnings)
    assert any("not a Dutch postcode" in w for w in report.warnings)
    assert any("could not be read; their age band is unknown" in w for w in report.warnings)
    for reject in report.rejects:  # identifying values are never quoted
        assert "100001" not in reject.reason and "voorbeeld.nl" not in reject.reason


def test_a_refused_import_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    first = write(tmp_path / "a.csv", generic_row("T1"))
    run(engine, first)
    before = snapshot(engine)
    bad = write(tmp_path / "b.csv", generic_row("T2", event_id="E9"), generic_row("T3", price="x"))
    rejects = tmp_path / "b-afgekeurd.csv"
    with pytest.raises(ImportRefused) as refused:
        run(engine, bad, rejects_path=rejects)
    assert refused.value.report.batch_id is None
    assert "nothing was written" in str(refused.value)
    assert snapshot(engine) == before
    assert rejects.read_text("utf-8-sig").splitlines() == [
        "file;line;column;reason",
        "b.csv;3;price;'x' is not an amount (expected a decimal comma, e.g. 12,50 or 1.234,50)",
    ]


def test_skip_invalid_imports_the_rest_and_writes_the_rejects_file(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(tmp_path / "kassa.csv", generic_row("T1"), generic_row("T2", price="1,2,3"))
    report = run(engine, path, skip_invalid=True, max_rejected_share=0.5)
    assert (report.inserted, report.rejected) == (1, 1)
    assert report.rejects_file == tmp_path / "kassa.rejects.csv"
    rows = list(csv.reader(io.StringIO(report.rejects_file.read_text("utf-8-sig")), delimiter=";"))
    assert rows[1][:3] == ["kassa.csv", "3", "price"]
    with factory_of(engine)() as session:
        batch = session.scalars(select(ImportBatch)).one()
    assert (batch.rows_inserted, batch.rows_rejected) == (1, 1)


def test_unreadable_files_get_clear_messages(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile, match="file not found"):
        run(engine, tmp_path / "missing.csv")
    (tmp_path / "leeg.csv").write_bytes(b"")
    with pytest.raises(UnreadableFile, match="the file is empty"):
        run(engine, tmp_path / "leeg.csv")
    (tmp_path / "oud.xls").write_bytes(b"\xd0\xcf\x11\xe0" + b"\0" * 100)
    with pytest.raises(UnreadableFile, match=r"old Excel workbook \(.xls\)"):
        run(engine, tmp_path / "oud.xls")
    (tmp_path / "kolommen.csv").write_text("Ticket;Klant;Prijs\n1;2;3\n", "utf-8")
    with pytest.raises(UnreadableFile, match=r"required column\(s\) missing: 'ticket_id'.*"
                       r"The file has these columns: 'Ticket', 'Klant', 'Prijs'"):  # fmt: skip
        run(engine, tmp_path / "kolommen.csv")
    (tmp_path / "binair.csv").write_bytes(HEADER.encode() + b"\n\x81\x8d\x90;x\n")
    with pytest.raises(UnreadableFile, match=r"line 2 contains a byte \(0x81\).*CSV UTF-8"):
        run(engine, tmp_path / "binair.csv")
    assert snapshot(engine)["import_batch"] == []


# -- idempotency, updates, derived fields ----------------------------------------------------------


def test_importing_the_same_file_twice_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "kassa.csv"
    generate_export(path, kind="theatre", rows=800, seed=5)
    first = run(engine, path)
    before = snapshot(engine)
    second = run(engine, path)
    assert snapshot(engine) == before
    assert first.inserted == 800 and first.batch_id is not None and not first.nothing_changed
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 800)
    assert second.nothing_changed and second.batch_id is None
    assert any("identical file was imported before" in w for w in second.warnings)


def test_a_later_export_updates_a_refunded_ticket(engine: Engine, tmp_path: Path) -> None:
    run(engine, write(tmp_path / "maart.csv", generic_row("T1"), generic_row("T2")))
    (person,) = persons(engine)
    assert person.first_seen == date(2025, 3, 14)
    later = write(
        tmp_path / "april.csv",
        generic_row("T1", status="geretourneerd"),
        generic_row("T2", status="geretourneerd"),
        generic_row("T3", event_id="E2", event_start="02-05-2025 20:15"),
    )
    report = run(engine, later)
    assert (report.inserted, report.updated, report.unchanged) == (1, 2, 0)
    assert [a.status for a in admissions(engine)] == ["refunded", "refunded", "sold"]
    (person,) = persons(engine)
    assert person.first_seen == date(2025, 5, 2)  # recomputed: the March visits were refunded
    assert len({a.batch_id for a in admissions(engine)}) == 1  # all three written by batch 2


def test_derived_fields_of_hand_made_rows(engine: Engine, tmp_path: Path) -> None:
    rows = [
        # birthday on 15 March: 17 on the 14th, 18 on the 15th
        generic_row("A1", birth_date="15-03-2007", customer_id="1", ordered_at="14-03-2025"),
        generic_row("A2", birth_date="15-03-2007", customer_id="1", event_id="E2",
                    event_start="15-03-2025 14:30", ordered_at="12-03-2025 09:00"),
        generic_row("A3", customer_id="2", postcode="1234ab", ordered_at="04-03-2025 12:00"),
        generic_row("A4", customer_id="3", postcode="1234", ordered_at="13-01-2025 12:00"),
        generic_row("A5", customer_id="4", postcode="B-2000", ordered_at="01-12-2024 12:00"),
        generic_row("A6", customer_id="5", postcode="", ordered_at=""),
        generic_row("A7", customer_id="", email="Klant100009@Voorbeeld.NL", birth_date=""),
    ]  # fmt: skip
    run(engine, write(tmp_path / "kassa.csv", *rows))
    a1, a2, a3, a4, a5, a6, a7 = by_ticket(engine, *(f"A{i}" for i in range(1, 8)))
    assert (a1.age_band, a2.age_band) == ("lt18", "18_29")
    assert (a1.lead_time, a2.lead_time, a3.lead_time, a4.lead_time, a5.lead_time) == (
        "same_day", "1_6", "7_29", "30_89", "90plus"
    )  # fmt: skip
    assert (a6.lead_time, a6.ordered_date, a7.age_band) == ("unknown", None, "unknown")
    assert (a1.event_month, a1.event_quarter, a1.event_year, a1.weekday) == (
        "2025-03", "2025-Q1", "2025", "fri"
    )  # fmt: skip
    assert (a2.weekday, a1.artform, a1.price_type, a1.channel) == (
        "sat", "theatre", "regular", "online"
    )  # fmt: skip
    assert a1.attended is True
    pc4 = {p.id: p.pc4 for p in persons(engine)}
    assert [pc4[a.person_id] for a in (a1, a3, a4, a5, a6)] == ["3512", "1234", "1234", None, None]
    by_id = {p.id: p.pseudonym for p in persons(engine)}
    assert by_id[a7.person_id] == pseudonym(SECRET, "klant100009@voorbeeld.nl")
    assert by_id[a1.person_id] == pseudonym(SECRET, "1")


def test_first_seen_is_the_earliest_sold_visit_across_imports(
    engine: Engine, tmp_path: Path
) -> None:
    run(engine, write(tmp_path / "a.csv", generic_row("T1", event_start="10-05-2025 20:15")))
    assert persons(engine)[0].first_seen == date(2025, 5, 10)
    run(engine, write(tmp_path / "b.csv", generic_row("T2", event_id="E2",
                                                      event_start="01-03-2025 20:15")))  # fmt: skip
    assert persons(engine)[0].first_seen == date(2025, 3, 1)
    run(engine, write(tmp_path / "c.csv", generic_row("T3", event_id="E3",
                                                      event_start="01-06-2025 20:15")))  # fmt: skip
    assert persons(engine)[0].first_seen == date(2025, 3, 1)


def test_pc4_and_segment_follow_the_latest_order(engine: Engine, tmp_path: Path) -> None:
    newer = generic_row("T1", postcode="1011 AA", segment="cdm_01", ordered_at="01-03-2025")
    older = generic_row("T2", postcode="9999 ZZ", segment="cdm_09", ordered_at="01-01-2025")
    run(engine, write(tmp_path / "a.csv", newer, older))
    assert (persons(engine)[0].pc4, persons(engine)[0].segment) == ("1011", "cdm_01")
    # An older order in a later file does not overwrite; a newer one does.
    run(engine, write(tmp_path / "b.csv", generic_row("T3", postcode="2000 AA",
                                                      ordered_at="01-02-2025")))  # fmt: skip
    assert persons(engine)[0].pc4 == "1011"
    run(engine, write(tmp_path / "c.csv", generic_row("T4", postcode="3000 AA",
                                                      ordered_at="02-03-2025")))  # fmt: skip
    assert persons(engine)[0].pc4 == "3000"


def test_no_raw_identifier_is_stored_anywhere(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "kassa.csv"
    generate_export(path, kind="museum", rows=400, seed=11)
    run(engine, path, skip_invalid=True)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        records = list(csv.DictReader(handle, delimiter=";"))
    substrings = set()
    whole = set()
    for r in records:
        substrings |= {r["email"], f"{r['first_name']} {r['last_name']}", r["phone"], r["street"]}
        if any(c.isalpha() for c in r["postcode"]):
            substrings.add(r["postcode"])
        if r["birth_date"]:
            substrings.add(r["birth_date"])
        whole |= {r["customer_id"], r["order_id"], r["ticket_id"]} - {""}
    cells = [
        str(value)
        for rows in snapshot(engine).values()
        for row in rows
        for value in row
        if isinstance(value, str)
    ]
    assert cells
    for cell in cells:
        assert cell not in whole
        assert not any(s and s in cell for s in substrings), cell


def test_defaults_fill_fields_the_export_lacks(engine: Engine, tmp_path: Path) -> None:
    profile = parse_profile(
        """
        [format]
        decimal = "comma"
        [columns]
        ticket_id = "Ticket"
        event_start = "Datum"
        customer = ["Klant"]
        birth_year = "Geboortejaar"
        [defaults]
        venue = "Zaal Noord"
        """,
        origin="kassa.toml",
        fallback_name="kassa",
    )
    path = tmp_path / "k.csv"
    path.write_text(
        "Ticket;Datum;Klant;Geboortejaar\n1;30-06-2025;a;2007\n2;01-07-2025;a;2007\n", "utf-8"
    )
    report = import_file(
        factory_of(engine), SECRET, path, profile, defaults={"artform": "dance"}, source="zaal-2"
    )
    assert report.inserted == 2 and report.source == "zaal-2"
    ages = [a.age_band for a in by_ticket(engine, "1", "2", source="zaal-2")]
    assert ages == ["lt18", "18_29"]  # as if born on 1 July
    assert {(a.artform, a.status, a.source) for a in admissions(engine)} == {
        ("dance", "sold", "zaal-2")
    }
    with factory_of(engine)() as session:
        assert {e.venue for e in session.scalars(select(Event))} == {"Zaal Noord"}


# -- atomicity and the helper process --------------------------------------------------------------


def test_a_crash_halfway_leaves_nothing_behind(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kassa.csv"
    generate_export(path, kind="cinema", rows=600, seed=2)
    before = snapshot(engine)
    monkeypatch.setattr(stream, "CHUNK_ROWS", 100)
    calls = []
    original = AdmissionWriter._insert_admissions

    def failing(self: AdmissionWriter, values: list[tuple[Any, ...]]) -> None:
        calls.append(len(values))
        if len(calls) == 3:
            raise RuntimeError("the disk is full")
        original(self, values)

    monkeypatch.setattr(AdmissionWriter, "_insert_admissions", failing)
    with pytest.raises(RuntimeError, match="the disk is full"):
        run(engine, path)
    assert len(calls) == 3
    assert snapshot(engine) == before
    monkeypatch.setattr(AdmissionWriter, "_insert_admissions", original)
    assert run(engine, path).inserted == 600


def test_large_files_are_parsed_in_a_helper_process(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kassa.csv"
    generate_export(path, kind="festival", rows=700, seed=4, dirty_rows=10)
    monkeypatch.setattr(importer, "_use_helper_process", lambda path: True)
    monkeypatch.setattr(stream, "CHUNK_ROWS", 200)  # not seen by the helper: its own default
    seen: list[tuple[int, int | None]] = []
    report = run(engine, path, skip_invalid=True, progress=lambda d, t: seen.append((d, t)))
    assert (report.rows_read, report.rejected) == (700, 7)
    assert seen[-1] == (700, 700)
    monkeypatch.setattr(importer, "_use_helper_process", lambda path: False)
    again = run(engine, path, skip_invalid=True)
    assert again.nothing_changed and again.unchanged == report.inserted
    monkeypatch.setattr(importer, "_use_helper_process", lambda path: True)
    (tmp_path / "kolommen.csv").write_text("Ticket;Prijs\n1;2\n", "utf-8")
    with pytest.raises(UnreadableFile, match="required column"):
        run(engine, tmp_path / "kolommen.csv")


def test_the_documented_example_rows_import(engine: Engine, tmp_path: Path) -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "reference" / "import-profiles.md"
    text = doc.read_text("utf-8")
    start = text.index("```csv\n") + len("```csv\n")
    path = tmp_path / "voorbeeld.csv"
    path.write_text(text[start : text.index("```", start)], "utf-8")
    report = run(engine, path)
    assert (report.inserted, report.rejected) == (3, 0)
    assert report.warnings == [
        "The profile maps these columns, but the file does not have them, so they were "
        "skipped: 'production' (production), 'venue' (venue), 'hall' (hall), 'is_free' "
        "(is_free), 'segment' (segment)."
    ]
    t1, t2, t3 = by_ticket(engine, "T1001", "T1002", "T1003")
    assert (t1.price_cents, t2.price_type, t3.price_cents) == (2750, "youth_cjp", 123450)
    assert (t3.status, t3.channel, t3.lead_time, t3.artform) == (
        "refunded", "box_office", "same_day", "dance"
    )  # fmt: skip


def test_reading_stops_after_too_many_problems(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "MAX_REJECTS_WHEN_REFUSING", 5)
    monkeypatch.setattr(stream, "CHUNK_ROWS", 3)
    bad = [generic_row(f"T{i}", price="x") for i in range(20)]
    with pytest.raises(ImportRefused) as refused:
        run(engine, write(tmp_path / "kassa.csv", *bad))
    report = refused.value.report
    assert (report.rejected, report.rows_read) == (5, 5)
    assert "Stopped reading at line 6 after 5 rejected rows" in report.warnings[-1]


def test_the_helper_process_is_for_large_files_on_an_idle_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = write(tmp_path / "klein.csv", generic_row("T1"))
    assert importer._use_helper_process(small) is False
    assert importer._use_helper_process(tmp_path / "missing.csv") is False
    monkeypatch.setattr(importer, "HELPER_PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(importer.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(importer, "_idle_cores", lambda cores: 1.5)
    assert importer._use_helper_process(small) is True
    monkeypatch.setattr(importer, "_idle_cores", lambda cores: 0.2)
    assert importer._use_helper_process(small) is False


def test_idle_cores_are_measured() -> None:
    idle = importer._idle_cores(2, window=0.05)
    assert idle is None or 0.0 <= idle <= 2.0
