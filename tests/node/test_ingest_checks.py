"""Imports that never lie (issue 14): cut files, field counts, Excel dates, implausible birth
dates, mojibake, the share of rejected rows, header-only files and XLSX size limits. On SQLite
and PostgreSQL."""

from __future__ import annotations

import zipfile
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from node.ingest.errors import ImportRefused, UnreadableFile
from node.ingest.importer import import_file
from node.ingest.parsing import age_band_of
from node.ingest.profile import parse_profile
from node.ingest.reader import ReadLimits
from tests.node.test_ingest_import import (
    HEADER,
    SECRET,
    admissions,
    by_ticket,
    factory_of,
    generic_row,
    run,
    snapshot,
    write,
)

FIELDS = len(HEADER.split(";"))


# -- cut files and field counts --------------------------------------------------------------------


def test_a_file_cut_inside_a_quoted_value_is_a_reject(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "kassa.csv"
    cut = generic_row("T3", event_title='"Een titel die') + "\nover twee regels"
    path.write_text("\n".join((HEADER, generic_row("T1"), generic_row("T2"), cut)), "utf-8")
    with pytest.raises(ImportRefused) as refused:
        run(engine, path)
    (reject,) = refused.value.report.rejects
    assert (reject.file, reject.line, reject.column) == ("kassa.csv", 4, "")
    assert "never closed" in reject.reason and "cut off" in reject.reason
    assert snapshot(engine)["admission"] == []
    report = run(engine, path, skip_invalid=True, max_rejected_share=0.5)
    assert (report.inserted, report.rejected) == (2, 1)
    assert len(admissions(engine)) == 2


def test_a_short_last_record_is_a_reject(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "kassa.csv"
    cut = ";".join(generic_row("T2").split(";")[:10])  # the export stopped halfway a row
    path.write_text("\n".join((HEADER, generic_row("T1"), cut)), "utf-8")
    with pytest.raises(ImportRefused) as refused:
        run(engine, path)
    (reject,) = refused.value.report.rejects
    assert str(reject).startswith(
        f"kassa.csv, line 3: expected {FIELDS} fields (as in the header), found 10"
    )


def test_rows_with_too_few_or_too_many_fields_name_the_count(
    engine: Engine, tmp_path: Path
) -> None:
    without_last = generic_row("T1").rsplit(";", 1)[0]  # only the segment is missing
    shifted = generic_row("T2", hall="Grote; Kleine Zaal", segment="")  # ; in an unquoted value
    path = write(tmp_path / "kassa.csv", without_last, shifted, generic_row("T3"))
    with pytest.raises(ImportRefused) as refused:
        run(engine, path)
    first, second = refused.value.report.rejects
    assert (first.line, first.column) == (2, "")
    assert f"expected {FIELDS} fields (as in the header), found {FIELDS - 1}" in first.reason
    assert (second.line, second.column) == (3, "")
    assert f"expected {FIELDS} fields (as in the header), found {FIELDS + 1}" in second.reason
    assert "the separator (';') without quotes" in second.reason
    assert "every row ends with an extra ';', the header line lacks one" in second.reason
    assert "is not a date" not in str(refused.value.report.rejects)


def test_a_header_only_file_says_it_has_no_rows(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "leeg.csv")
    with pytest.raises(UnreadableFile, match="has column names but no rows; nothing was imported"):
        run(engine, path)
    assert snapshot(engine)["import_batch"] == []


# -- Excel -----------------------------------------------------------------------------------------


def _workbook_rows(*rows: dict[str, object]) -> object:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    header = HEADER.split(";")
    sheet.append(header)
    for row in rows:
        sheet.append([row.get(name) for name in header])
    return workbook


def test_real_excel_date_cells_keep_their_birth_dates(engine: Engine, tmp_path: Path) -> None:
    header = HEADER.split(";")
    base = dict(zip(header, generic_row("T1").split(";"), strict=True))
    rows = []
    for ticket, born in (("T1", date(1980, 3, 15)), ("T2", datetime(1960, 1, 2))):
        row: dict[str, object] = dict(base, ticket_id=ticket, birth_date=born)
        row.update(event_start=datetime(2025, 3, 14, 20, 15), ordered_at=datetime(2025, 3, 1))
        rows.append(row)
    workbook = _workbook_rows(*rows)
    sheet = workbook.active  # type: ignore[attr-defined]
    for line in (2, 3):  # as Excel writes them: date serials with a date number format
        sheet.cell(line, header.index("birth_date") + 1).number_format = "dd-mm-yyyy"
        sheet.cell(line, header.index("ordered_at") + 1).number_format = "dd-mm-yyyy"
        sheet.cell(line, header.index("event_start") + 1).number_format = "dd-mm-yyyy hh:mm"
    path = tmp_path / "kassa.xlsx"
    workbook.save(path)  # type: ignore[attr-defined]
    report = run(engine, path)
    assert report.inserted == 2
    assert not any("age band is unknown" in w for w in report.warnings)
    t1, t2 = by_ticket(engine, "T1", "T2")
    assert (t1.age_band, t2.age_band) == (age_band_of(44), age_band_of(65))
    assert t1.lead_time == "7_29"


def test_the_event_warning_of_an_xlsx_uses_the_operators_column_names(
    engine: Engine, tmp_path: Path
) -> None:
    header = [h for h in HEADER.split(";") if h != "event_id"]
    base = dict(zip(HEADER.split(";"), generic_row("T1").split(";"), strict=True))
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(header)
    sheet.append([dict(base, ticket_id="T1", capacity="850")[h] for h in header])
    sheet.append([dict(base, ticket_id="T2", capacity="900")[h] for h in header])
    path = tmp_path / "kassa.xlsx"
    workbook.save(path)
    report = run(engine, path)
    (warning,) = [w for w in report.warnings if "different details" in w]
    assert "auto-" not in warning
    assert "'Hamlet'" in warning and "event_title" in warning and "event_start" in warning


def _bomb(path: Path, padding: int) -> Path:
    """A small workbook whose sheet XML holds ``padding`` spaces (they compress ~1000:1)."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(HEADER.split(";"))
    sheet.append(generic_row("T1").split(";"))
    plain = path.with_name("plain.xlsx")
    workbook.save(plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"<sheetData>", b"<sheetData>" + b" " * padding)
            out.writestr(item.filename, data)
    return path


def test_an_xlsx_that_unpacks_too_large_is_refused_before_parsing(
    engine: Engine, tmp_path: Path
) -> None:
    path = _bomb(tmp_path / "bom.xlsx", 3_000_000)
    assert path.stat().st_size < 100_000
    with pytest.raises(UnreadableFile, match=r"unpacks to more than 100 times its own size"):
        run(engine, path)  # the default limits
    limits = ReadLimits(xlsx_max_unpacked_bytes=1_000_000, xlsx_max_ratio=100_000)
    with pytest.raises(UnreadableFile, match=r"unpacks to more than 1\.0 MB"):
        run(engine, path, limits=limits)
    assert snapshot(engine)["import_batch"] == []
    limits = ReadLimits(xlsx_max_unpacked_bytes=10_000_000, xlsx_max_ratio=100_000)
    assert run(engine, path, limits=limits).inserted == 1


def test_an_xlsx_with_too_many_rows_is_refused(engine: Engine, tmp_path: Path) -> None:
    header = HEADER.split(";")
    rows = [dict(zip(header, generic_row(f"T{i}").split(";"), strict=True)) for i in range(5)]
    path = tmp_path / "kassa.xlsx"
    _workbook_rows(*rows).save(path)  # type: ignore[attr-defined]
    with pytest.raises(UnreadableFile, match="more than 3 rows"):
        run(engine, path, limits=ReadLimits(xlsx_max_rows=3))
    assert snapshot(engine)["admission"] == []


# -- birth dates -----------------------------------------------------------------------------------


def test_implausible_birth_dates_count_as_unknown_with_a_warning(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "kassa.csv",
        generic_row("T1", birth_date="31-12-1899"),
        generic_row("T2", birth_date="01-01-2090"),
        generic_row("T3", birth_date="15-03-2025"),  # the day after the event
        generic_row("T4", birth_date="14-03-2025"),  # born on the day of the event: age 0
        generic_row("T5"),
        # An event far ahead, and a birth date before it but in the future.
        generic_row("T6", birth_date="01-01-2090", event_id="E9", event_start="01-01-2091 20:00"),
    )
    report = run(engine, path)
    assert report.inserted == 6
    assert report.birth_dates_implausible == 4
    assert any(
        "4 row(s) had a birth date before 1900 or after the event" in w for w in report.warnings
    )
    bands = [a.age_band for a in by_ticket(engine, "T1", "T2", "T3", "T4", "T5", "T6")]
    assert bands == ["unknown", "unknown", "unknown", age_band_of(0), age_band_of(44), "unknown"]


# -- encodings and the share of rejected rows ------------------------------------------------------


def test_a_utf8_file_read_as_windows_1252_is_refused_with_a_hint(
    engine: Engine, tmp_path: Path
) -> None:
    rows = [generic_row(f"T{i}", price="€ 40,50", event_title="Één avond") for i in range(20)]
    path = write(tmp_path / "kassa.csv", *rows, encoding="utf-8")
    cp1252 = parse_profile(
        '[format]\nencoding = "cp1252"\n[columns]\nticket_id = "ticket_id"\n'
        'event_start = "event_start"\ncustomer = ["customer_id"]\nprice = "price"\n'
        'event_title = "event_title"\n',
        origin="test",
        fallback_name="kassa",
    )
    factory = factory_of(engine)
    with pytest.raises(UnreadableFile, match="this file looks like UTF-8, not Windows-1252"):
        import_file(factory, SECRET, path, cp1252, skip_invalid=True)
    # A UTF-8 file with one stray Windows-1252 byte: auto-detection must not read it all wrong.
    mixed = tmp_path / "gemengd.csv"
    mixed.write_bytes(path.read_bytes() + generic_row("T99", hall="Zaal\xe9").encode("cp1252"))
    with pytest.raises(UnreadableFile, match=r"looks like UTF-8.*line 22.*0x(eb|e9)"):
        run(engine, mixed, skip_invalid=True)
    assert snapshot(engine)["import_batch"] == []


def test_skip_invalid_refuses_when_too_many_rows_are_rejected(
    engine: Engine, tmp_path: Path
) -> None:
    rows = [generic_row(f"T{i}", price="x" if i < 2 else "10,00") for i in range(20)]
    path = write(tmp_path / "kassa.csv", *rows)
    with pytest.raises(ImportRefused) as refused:
        run(engine, path, skip_invalid=True)
    assert refused.value.too_many
    assert "2 of 20 rows (10%) were rejected, more than the 5% allowed" in str(refused.value)
    assert snapshot(engine)["admission"] == []
    assert run(engine, path, skip_invalid=True, max_rejected_share=0.1).inserted == 18


def test_the_profile_sets_the_share_of_rows_that_may_be_rejected(
    engine: Engine, tmp_path: Path
) -> None:
    rows = [generic_row(f"T{i}", price="x" if i < 1 else "10,00") for i in range(20)]
    path = write(tmp_path / "kassa.csv", *rows)
    assert run(engine, path, skip_invalid=True).inserted == 19  # 5% is not more than 5%
    strict = parse_profile(
        '[format]\nmax_rejected_share = 0\n[columns]\nticket_id = "ticket_id"\n'
        'event_start = "event_start"\ncustomer = ["customer_id"]\nprice = "price"\n',
        origin="test",
        fallback_name="streng",
    )
    assert strict.max_rejected_share == 0
    with pytest.raises(ImportRefused, match="more than the 0% allowed"):
        import_file(factory_of(engine), SECRET, path, strict, skip_invalid=True)


def test_the_default_limits_are_the_node_settings_defaults() -> None:
    from node.settings import NodeSettings

    fields = NodeSettings.model_fields
    assert fields["import_xlsx_max_unpacked_bytes"].default == ReadLimits().xlsx_max_unpacked_bytes
    assert fields["import_xlsx_max_ratio"].default == ReadLimits().xlsx_max_ratio
    assert fields["import_xlsx_max_rows"].default == ReadLimits().xlsx_max_rows


def test_the_share_of_rejects_is_compared_without_rounding_errors() -> None:
    from node.ingest.importer import _share_exceeded

    assert not _share_exceeded(29, 100, 0.29)  # 0.29 * 100 is 28.999999999999996 in floats
    assert _share_exceeded(30, 100, 0.29)
    assert not _share_exceeded(0, 100, 0.0) and _share_exceeded(1, 100, 0.0)
    assert not _share_exceeded(100, 100, 1.0)
