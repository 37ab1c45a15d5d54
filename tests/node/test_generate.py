"""The synthetic export generator: reproducible, streaming, and plausibly shaped."""

from __future__ import annotations

import csv
import statistics
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from node.ingest.generate import DIRTY_KINDS, FORMATS, generate_export, is_reject
from node.ingest.synthetic import KINDS


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle, delimiter=";"))


def test_the_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    for fmt in FORMATS:
        a = generate_export(tmp_path / f"a-{fmt}.csv", kind="museum", rows=2000, seed=9, fmt=fmt,
                            dirty_rows=30)  # fmt: skip
        b = generate_export(tmp_path / f"b-{fmt}.csv", kind="museum", rows=2000, seed=9, fmt=fmt,
                            dirty_rows=30)  # fmt: skip
        c = generate_export(tmp_path / f"c-{fmt}.csv", kind="museum", rows=2000, seed=10, fmt=fmt)
        assert a.sha256 == b.sha256 != c.sha256
        assert a.path.read_bytes() == b.path.read_bytes()


def test_formats_encodings_and_dropped_columns(tmp_path: Path) -> None:
    generic = generate_export(tmp_path / "g.csv", kind="theatre", rows=300, seed=1)
    raw = generic.path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" not in raw
    header = raw.decode("utf-8-sig").splitlines()[0].split(";")
    assert {"first_name", "last_name", "phone", "street", "email", "birth_date"} <= set(header)
    ticketmatic = generate_export(tmp_path / "t.csv", kind="theatre", rows=300, seed=1,
                                  fmt="ticketmatic")  # fmt: skip
    text = ticketmatic.path.read_bytes().decode("cp1252")
    assert text.startswith("ticketid;orderid;customerid") and "\r\n" in text
    eventbrite = generate_export(tmp_path / "e.csv", kind="theatre", rows=300, seed=1,
                                 fmt="eventbrite")  # fmt: skip
    first = eventbrite.path.read_text("utf-8").splitlines()[0]
    assert first.startswith("Order #,Order Date,First Name")
    records = read(generic.path)
    assert len(records) == 300
    assert all(r["email"].endswith("@voorbeeld.nl") for r in records)
    assert all(r["phone"].startswith("06-0000") for r in records)
    assert any("," in r["price"] for r in records)


def test_dirty_rows_of_every_kind(tmp_path: Path) -> None:
    report = generate_export(tmp_path / "d.csv", kind="cinema", rows=3000, seed=2,
                             dirty_rows=len(DIRTY_KINDS) * 3)  # fmt: skip
    assert report.dirty == {kind: 3 for kind in DIRTY_KINDS}
    assert report.expected_rejects == 3 * sum(is_reject(k, "generic") for k in DIRTY_KINDS)
    assert is_reject("missing_customer", "generic") and not is_reject("missing_customer",
                                                                     "ticketmatic")  # fmt: skip
    assert not is_reject("malformed_postcode", "generic")
    with pytest.raises(ValueError, match="dirty_rows"):
        generate_export(tmp_path / "x.csv", kind="cinema", rows=30, seed=2, dirty_rows=11)
    with pytest.raises(ValueError, match="kind must be one of"):
        generate_export(tmp_path / "x.csv", kind="zoo", rows=30, seed=2)  # type: ignore[arg-type]


def _shape(path: Path) -> dict[str, Any]:
    records = read(path)
    # A visit is one person at one event (a person often buys tickets for companions too).
    visits = Counter(email for email, _ in {(r["email"], r["event_id"]) for r in records})
    months: Counter[int] = Counter()
    weekdays: Counter[int] = Counter()
    for r in records:
        start = datetime.strptime(r["event_start"], "%d-%m-%Y %H:%M")
        months[start.month] += 1
        weekdays[start.weekday()] += 1
    share = {m: months[m] / len(records) for m in range(1, 13)}
    return {
        "visits": sorted(visits.values()),
        "month": share,
        "weekend": sum(weekdays[d] for d in (4, 5, 6)) / len(records),
        "records": records,
    }


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("shapes")
    return {
        kind: _shape(generate_export(folder / f"{kind}.csv", kind=kind, rows=12_000, seed=7).path)
        for kind in KINDS
    }


def test_visits_per_person_are_heavy_tailed(shapes: dict[str, dict[str, Any]]) -> None:
    for kind in ("theatre", "museum", "cinema", "library"):
        visits = shapes[kind]["visits"]
        assert statistics.median(visits) == 1, kind
        assert max(visits) >= 15 * statistics.median(visits), kind
        assert sum(v == 1 for v in visits) / len(visits) > 0.5, kind


def test_seasonality_per_institution_type(shapes: dict[str, dict[str, Any]]) -> None:
    theatre, museum = shapes["theatre"]["month"], shapes["museum"]["month"]
    festival, library = shapes["festival"]["month"], shapes["library"]["month"]
    assert theatre[7] + theatre[8] < 0.05  # the summer dip
    assert theatre[10] + theatre[11] > 0.15
    assert museum[7] + museum[8] > museum[2] + museum[3]  # summer holidays
    assert festival[7] > 0.95  # a few weeks in July
    assert library[7] < 1 / 12
    assert shapes["cinema"]["weekend"] > 0.5  # Friday to Sunday


def test_prices_and_price_types_fit_the_institution(shapes: dict[str, dict[str, Any]]) -> None:
    def types(kind: str) -> Counter[str]:
        return Counter(r["price_type"] for r in shapes[kind]["records"])

    assert types("museum")["Museumkaart"] > 0.2 * 12_000
    assert types("cinema")["Cineville"] > 0.15 * 12_000
    assert "Museumkaart" not in types("theatre")
    library = shapes["library"]["records"]
    assert sum(r["is_free"] == "ja" for r in library) > len(library) / 4
    for r in shapes["museum"]["records"]:
        ordered = datetime.strptime(r["ordered_at"], "%d-%m-%Y %H:%M")
        assert ordered <= datetime.strptime(r["event_start"], "%d-%m-%Y %H:%M")
