"""Loading the operator's PC4 → municipality → province table."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from node.ingest.errors import GeoTableError
from node.ingest.geo import load_geo_table
from node.storage.db import make_sessionmaker
from node.storage.models import GeoPc4


def rows(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        table = GeoPc4.__table__
        return [tuple(r) for r in conn.execute(select(table).order_by(table.c.pc4))]


def test_load_replaces_the_table_and_accepts_cbs_codes(engine: Engine, tmp_path: Path) -> None:
    factory = make_sessionmaker(engine)
    first = tmp_path / "pc4.csv"
    first.write_text("pc4;municipality_code;province\n1011;GM0363;NL-NH\n9999;GM0001;NL-GR\n")
    assert load_geo_table(factory, first) == 2
    second = tmp_path / "pc4-2025.csv"
    second.write_text(
        "PC4,Gemeentecode,Provinciecode\n3511,344,PV26\n1011,GM0363,pv27\n1011,GM0363,NL-NH\n",
        encoding="utf-8-sig",
    )
    assert load_geo_table(factory, second) == 2
    assert rows(engine) == [("1011", "GM0363", "NL-NH"), ("3511", "GM0344", "NL-UT")]


def test_bad_lines_are_all_reported_and_nothing_changes(engine: Engine, tmp_path: Path) -> None:
    factory = make_sessionmaker(engine)
    good = tmp_path / "pc4.csv"
    good.write_text("pc4;municipality_code;province\n1011;GM0363;NL-NH\n")
    load_geo_table(factory, good)
    bad = tmp_path / "fout.csv"
    bad.write_text(
        "pc4;municipality_code;province\n"
        "0123;GM0363;NL-NH\n"
        "1012;Amsterdam;NL-NH\n"
        "1013;GM0363;Noord-Holland\n"
        "1014;GM0363;NL-NH\n"
        "1014;GM0344;NL-UT\n"
    )
    with pytest.raises(GeoTableError) as error:
        load_geo_table(factory, bad)
    message = str(error.value)
    assert "fout.csv: 4 line(s) cannot be used, so the PC4 table was not changed" in message
    assert "line 2: '0123' is not a four-digit PC4 area" in message
    assert "line 3: 'Amsterdam' is not a CBS municipality code such as GM0344" in message
    assert "line 4: 'Noord-Holland' is not a Dutch province code" in message
    assert "line 6: PC4 1014 appears twice" in message
    assert rows(engine) == [("1011", "GM0363", "NL-NH")]


def test_missing_columns_and_files(engine: Engine, tmp_path: Path) -> None:
    factory = make_sessionmaker(engine)
    path = tmp_path / "pc4.csv"
    path.write_text("postcode;gemeente_naam\n1011;Amsterdam\n")
    with pytest.raises(GeoTableError, match=r"municipality_code, province are missing"):
        load_geo_table(factory, path)
    with pytest.raises(GeoTableError, match="file not found"):
        load_geo_table(factory, tmp_path / "missing.csv")
    empty = tmp_path / "leeg.csv"
    empty.write_text("pc4;municipality_code;province\n")
    with pytest.raises(GeoTableError, match="no rows below the header"):
        load_geo_table(factory, empty)
