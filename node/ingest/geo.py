"""Loading the operator's PC4 → municipality → province table.

CBS publishes which municipality each four-digit postcode area lies in; the node does not ship
that table (it changes every year when municipalities merge), the operator loads it. The file is
a CSV (';' or ',') or XLSX with the columns ``pc4``, ``municipality_code`` (``GM0344``; a bare
number such as ``344`` is accepted) and ``province`` (ISO 3166-2:NL such as ``NL-UT``, or the
CBS code ``PV26``). Loading replaces the whole table in one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from sqlalchemy import Table, delete, insert
from sqlalchemy.orm import Session, sessionmaker

from node.ingest.errors import GeoTableError, UnreadableFile
from node.ingest.reader import open_table
from node.storage.db import transaction
from node.storage.models import GeoPc4
from protocol.catalogue import PROVINCE_FROM_CBS, dimension

MAX_ERRORS_SHOWN = 20
COLUMNS: dict[str, tuple[str, ...]] = {
    "pc4": ("pc4", "postcode", "postcode4", "pc"),
    "municipality_code": (
        "municipality_code",
        "gemeentecode",
        "gemeente_code",
        "gm_code",
        "gmcode",
        "municipality",
    ),
    "province": ("province", "provincie", "provinciecode", "province_code", "pv_code"),
}
_PC4 = re.compile(r"[1-9]\d{3}")
_GM = re.compile(r"(?:GM)?(\d{1,4})", re.IGNORECASE)
_PV = re.compile(r"(?:PV)?(\d{2})", re.IGNORECASE)
_PROVINCES = frozenset(code for code in dimension("province").codes if code.startswith("NL-"))


def load_geo_table(factory: sessionmaker[Session], path: Path) -> int:
    """Replace the PC4 table with the rows of ``path``; returns the number of PC4 areas.

    Every bad line is reported (line number and reason) in one :class:`GeoTableError`, and
    then nothing is changed."""
    try:
        table = open_table(path)
    except UnreadableFile as exc:
        raise GeoTableError(str(exc)) from None
    with table:
        index = _columns(table.header, table.file_name)
        rows: dict[str, tuple[str, str]] = {}
        errors: list[str] = []
        for line, record in table.rows:
            values = [record[i].strip() if i < len(record) else "" for i in index]
            problem = _row(values, rows)
            if problem:
                errors.append(f"line {line}: {problem}")
    if errors:
        shown = "\n".join(errors[:MAX_ERRORS_SHOWN])
        more = (
            f"\n… and {len(errors) - MAX_ERRORS_SHOWN} more"
            if len(errors) > MAX_ERRORS_SHOWN
            else ""
        )
        raise GeoTableError(
            f"{table.file_name}: {len(errors)} line(s) cannot be used, so the PC4 table was not "
            f"changed:\n{shown}{more}"
        )
    if not rows:
        raise GeoTableError(f"{table.file_name}: the file has no rows below the header")
    geo = cast(Table, GeoPc4.__table__)
    with transaction(factory) as session:
        session.execute(delete(geo))
        session.execute(
            insert(geo),
            [
                {"pc4": pc4, "municipality_code": municipality, "province": province}
                for pc4, (municipality, province) in sorted(rows.items())
            ],
        )
    return len(rows)


def _columns(header: Sequence[str], file_name: str) -> list[int]:
    folded = [h.strip().casefold() for h in header]
    positions = []
    missing = []
    for name, aliases in COLUMNS.items():
        found = next((folded.index(a) for a in aliases if a in folded), None)
        if found is None:
            missing.append(name)
        else:
            positions.append(found)
    if missing:
        raise GeoTableError(
            f"{file_name}: the column(s) {', '.join(missing)} are missing; the file needs "
            f"pc4, municipality_code and province. Its columns are: "
            f"{', '.join(repr(h) for h in header)}"
        )
    return positions


def _row(values: list[str], rows: dict[str, tuple[str, str]]) -> str | None:
    """Add one line to ``rows``; the reason it is unusable, or None."""
    pc4, municipality, province = values
    if not _PC4.fullmatch(pc4):
        return f"{pc4!r} is not a four-digit PC4 area (1000–9999)"
    match = _GM.fullmatch(municipality)
    if not match:
        return f"{municipality!r} is not a CBS municipality code such as GM0344"
    municipality = f"GM{int(match[1]):04d}"
    province_code = _province(province)
    if province_code is None:
        return (
            f"{province!r} is not a Dutch province code; use ISO codes such as NL-UT or CBS "
            "codes such as PV26"
        )
    previous = rows.get(pc4)
    if previous is not None and previous != (municipality, province_code):
        return f"PC4 {pc4} appears twice, with different municipalities or provinces"
    rows[pc4] = (municipality, province_code)
    return None


def _province(text: str) -> str | None:
    upper = text.strip().upper()
    if upper in _PROVINCES:
        return upper
    match = _PV.fullmatch(upper)
    return PROVINCE_FROM_CBS.get(f"PV{match[1]}") if match else None
