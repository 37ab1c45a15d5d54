"""The sector pseudonym at import, against real key holder apps in-process: equal across
institutions, separate per year, the same from any t of n holders, atomic when holders are
down, idempotent, and never the e-mail address in the node's database or logs."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
from sqlalchemy import func, select

from node.home import init_home
from node.identity import load_secret, load_signing_key
from node.ingest.importer import import_file
from node.ingest.profile import load_profile
from node.ingest.sector import SectorPseudonymiser, SectorUnavailable
from node.keyholders import SectorConfig
from node.settings import NodeSettings
from node.storage.db import make_engine, make_sessionmaker
from node.storage.models import Admission, ImportBatch, Person, SectorPseudonym
from protocol import oprf
from protocol.sector import normalise, oprf_input, stored_value
from tests.keyholderkit import AppThread, Holder, Holders, running_holders
from tests.node.test_ingest_import import generic_row, write


def _node(tmp_path: Path, name: str, db_url: str | None = None) -> NodeSettings:
    return init_home(tmp_path / name, name, db_url)


def _import(settings: NodeSettings, path: Path, sector: SectorPseudonymiser) -> int:
    engine = make_engine(settings.database_url)
    try:
        report = import_file(
            make_sessionmaker(engine),
            load_secret(settings.secret_path),
            path,
            load_profile("generic"),
            sector=sector,
        )
    finally:
        engine.dispose()
    return report.sector_values


def _values(settings: NodeSettings) -> dict[tuple[str, int], str]:
    """(local person pseudonym, year) -> stored sector value."""
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(Person.pseudonym, SectorPseudonym.year, SectorPseudonym.value).join(
                    Person, Person.id == SectorPseudonym.person_id
                )
            )
            return {(p, y): v for p, y, v in rows}
    finally:
        engine.dispose()


def _expected(kit: Holders, email: str, year: int) -> str:
    """The value computed with the whole key, recombined from t shares (test only)."""
    shares = kit.shares[: kit.shares[0].threshold]
    lambdas = oprf.lagrange_at_zero([s.index for s in shares])
    key = sum(lam * s.share for lam, s in zip(lambdas, shares, strict=True)) % oprf.L
    identifier = normalise(email)
    assert identifier is not None
    return stored_value(oprf.direct(key, oprf_input(identifier, year)))


def _export(tmp_path: Path, name: str, rows: list[tuple[str, str, str, str]]) -> Path:
    """rows: (ticket, customer id, e-mail, event start)."""
    return write(
        tmp_path / name,
        *(
            generic_row(t, customer_id=c, email=e, event_id=f"E{s[6:10]}", event_start=s)
            for t, c, e, s in rows
        ),
    )


def test_two_institutions_get_the_same_pseudonym(tmp_path: Path, db_url: str) -> None:
    with running_holders(tmp_path) as kit:
        theatre = _node(tmp_path, "Theater", db_url)
        museum = _node(tmp_path, "Museum")
        configs: dict[str, SectorConfig] = {}
        for settings in (theatre, museum):
            key = load_signing_key(settings.signing_key_path)
            configs[settings.institution] = kit.enrol(settings.home, key, settings.institution)
        theatre_file = _export(
            tmp_path,
            "theater.csv",
            [
                ("T1", "1", " Ada@Example.NL", "14-03-2025 20:15"),
                ("T2", "1", "ada@example.nl", "14-03-2026 20:15"),
                ("T3", "2", "bob@example.nl", "14-03-2025 20:15"),
            ],
        )
        museum_file = _export(
            tmp_path,
            "museum.csv",
            [("M1", "77", "ADA@example.nl ", "01-05-2025 11:00")],
        )
        for settings, path in ((theatre, theatre_file), (museum, museum_file)):
            key = load_signing_key(settings.signing_key_path)
            with kit.pseudonymiser(configs[settings.institution], key) as sector:
                _import(settings, path, sector)
        at_theatre, at_museum = _values(theatre), _values(museum)
        assert len(at_theatre) == 3  # Ada in 2025 and 2026, Bob in 2025
        ada_2025 = _expected(kit, "ada@example.nl", 2025)
        assert set(at_museum.values()) == {ada_2025}
        assert ada_2025 in at_theatre.values()
        assert _expected(kit, "ada@example.nl", 2026) in at_theatre.values()
        assert _expected(kit, "bob@example.nl", 2025) in at_theatre.values()
        assert len(set(at_theatre.values())) == 3  # the years are unlinkable values


def test_any_two_of_three_holders_give_the_same_values(tmp_path: Path) -> None:
    emails = [f"klant{i}@voorbeeld.nl" for i in range(12)]
    with running_holders(tmp_path) as kit:
        settings = _node(tmp_path, "Theater")
        key = load_signing_key(settings.signing_key_path)
        config = kit.enrol(settings.home, key)
        results = []
        for down in range(3):
            for i, holder in enumerate(kit.holders):
                holder.up = i != down
            with kit.pseudonymiser(config, key, batch=5) as sector:
                results.append(sector.values(emails, 2025))
        assert results[0] == results[1] == results[2]
        assert results[0][3] == _expected(kit, emails[3], 2025)


def test_holders_down_at_import_leave_nothing_half_imported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with running_holders(tmp_path) as kit:
        settings = _node(tmp_path, "Theater")
        key = load_signing_key(settings.signing_key_path)
        config = kit.enrol(settings.home, key)
        kit.holders[0].up = kit.holders[2].up = False
        path = _export(tmp_path, "t.csv", [("T1", "1", "ada@example.nl", "14-03-2025 20:15")])
        with (
            kit.pseudonymiser(config, key) as sector,
            pytest.raises(SectorUnavailable, match="needs 2 of 3 key holders, but only 1"),
        ):
            _import(settings, path, sector)
        engine = make_engine(settings.database_url)
        try:
            with engine.connect() as conn:
                for model in (Person, Admission, ImportBatch, SectorPseudonym):
                    assert conn.scalar(select(func.count()).select_from(model)) == 0
        finally:
            engine.dispose()


def test_too_few_enrolled_holders_is_a_clear_error(tmp_path: Path) -> None:
    with running_holders(tmp_path) as kit:
        settings = _node(tmp_path, "Theater")
        key = load_signing_key(settings.signing_key_path)
        config = kit.enrol(settings.home, key)
        config.links = config.links[:1]
        with pytest.raises(SectorUnavailable, match="enrolled with 1 key holder"):
            kit.pseudonymiser(config, key)


def test_reimport_asks_nothing_and_no_email_is_stored_or_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    email = "zoe.geheim@voorbeeld.nl"
    with running_holders(tmp_path) as kit:
        settings = _node(tmp_path, "Theater")
        key = load_signing_key(settings.signing_key_path)
        config = kit.enrol(settings.home, key)
        path = _export(tmp_path, "t.csv", [("T1", "1", email, "14-03-2025 20:15")])
        with kit.pseudonymiser(config, key) as sector:
            assert _import(settings, path, sector) == 1
            asked = sector.requests
            assert asked == 2  # one batch, two holders
            assert _import(settings, path, sector) == 0
            assert sector.requests == asked
        database = Path(settings.database_url.removeprefix("sqlite:///"))
        for stored in [database, *database.parent.glob("node.db-*")]:
            data = stored.read_bytes()
            assert email.encode() not in data
            assert b"zoe.geheim" not in data
        for holder in kit.holders:
            db = Path(holder.settings.database_url.removeprefix("sqlite:///")).read_bytes()
            assert b"zoe.geheim" not in db
        assert "zoe.geheim" not in caplog.text


def test_access_shows_and_erasure_deletes_the_sector_values(tmp_path: Path) -> None:
    from node.services.gdpr import export_person, forget_person

    with running_holders(tmp_path) as kit:
        settings = _node(tmp_path, "Theater")
        key = load_signing_key(settings.signing_key_path)
        config = kit.enrol(settings.home, key)
        path = _export(
            tmp_path,
            "t.csv",
            [
                ("T1", "1", "ada@example.nl", "14-03-2025 20:15"),
                ("T2", "1", "ada@example.nl", "14-03-2026 20:15"),
            ],
        )
        with kit.pseudonymiser(config, key) as sector:
            _import(settings, path, sector)
        engine = make_engine(settings.database_url)
        try:
            factory, secret = make_sessionmaker(engine), load_secret(settings.secret_path)
            exported = export_person(factory, secret, "1")
            assert exported is not None
            assert exported["sector_pseudonyms"] == [
                {"year": 2025, "value": _expected(kit, "ada@example.nl", 2025)},
                {"year": 2026, "value": _expected(kit, "ada@example.nl", 2026)},
            ]
            assert forget_person(factory, secret, "1") == 2
            with engine.connect() as conn:
                assert conn.scalar(select(func.count()).select_from(SectorPseudonym)) == 0
        finally:
            engine.dispose()


def test_sector_step_is_on_exactly_when_enrolled(tmp_path: Path) -> None:
    from node.ingest.sector import sector_pseudonymiser

    with running_holders(tmp_path) as kit:
        settings = _node(tmp_path, "Theater")
        assert sector_pseudonymiser(settings, "email") is None
        kit.enrol(settings.home, load_signing_key(settings.signing_key_path))
        step = sector_pseudonymiser(settings, "email")
        assert step is not None
        with step:
            assert (step.config.threshold, len(step.config.links)) == (2, 3)


def test_a_holder_that_is_down_is_asked_last(tmp_path: Path) -> None:
    emails = [f"klant{i}@voorbeeld.nl" for i in range(9)]
    with running_holders(tmp_path) as kit:
        settings = _node(tmp_path, "Theater")
        key = load_signing_key(settings.signing_key_path)
        config = kit.enrol(settings.home, key)
        kit.holders[0].up = False
        with kit.pseudonymiser(config, key, batch=3) as sector:
            values = sector.values(emails, 2025)
            assert [link.index for link in sector._order] == [2, 3, 1]
        assert values[8] == _expected(kit, emails[8], 2025)
        assert sector.requests == 6  # three batches, answered by holders 2 and 3 each time


@pytest.mark.parametrize("helper_process", [False, True])
def test_the_helper_process_hands_over_the_identifiers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helper_process: bool
) -> None:
    """A large file is parsed in a helper process; the identifiers come back through its pipe
    (in memory only) and give the same values as parsing in this process."""
    from node.ingest import importer

    monkeypatch.setattr(importer, "_use_helper_process", lambda path: helper_process)
    with running_holders(tmp_path) as kit:
        settings = _node(tmp_path, "Theater")
        key = load_signing_key(settings.signing_key_path)
        config = kit.enrol(settings.home, key)
        path = _export(tmp_path, "t.csv", [("T1", "1", "ada@example.nl", "14-03-2025 20:15")])
        with kit.pseudonymiser(config, key) as sector:
            assert _import(settings, path, sector) == 1
        assert list(_values(settings).values()) == [_expected(kit, "ada@example.nl", 2025)]


def _corrupt(holder: Holder) -> None:
    """Make a running holder answer with another key than its public share (a malicious or
    broken holder): the app's state is the real one, its share replaced."""
    transport = holder.client._transport
    assert isinstance(transport, AppThread)
    state = transport.app.state.keyholder
    state.share = dataclasses.replace(state.share, share=oprf.new_key())


def test_a_holder_answering_with_another_key_is_caught_and_replaced(tmp_path: Path) -> None:
    emails = [f"klant{i}@voorbeeld.nl" for i in range(6)]
    with running_holders(tmp_path) as kit:
        settings = _node(tmp_path, "Theater")
        key = load_signing_key(settings.signing_key_path)
        config = kit.enrol(settings.home, key)
        _corrupt(kit.holders[0])
        with kit.pseudonymiser(config, key, batch=3) as sector:
            values = sector.values(emails, 2025)
            assert [link.index for link in sector._order] == [2, 3, 1]
        assert values == [_expected(kit, e, 2025) for e in emails]
        _corrupt(kit.holders[1])
        with (
            kit.pseudonymiser(config, key) as sector,
            pytest.raises(SectorUnavailable, match="another key than its public share"),
        ):
            sector.values(emails, 2025)


def test_joining_checks_that_the_public_shares_fit_one_key(tmp_path: Path) -> None:
    from node.keyholders import KeyholderConfigError, KeyholderLink

    with running_holders(tmp_path) as kit:
        settings = _node(tmp_path, "Theater")
        config = kit.enrol(settings.home, load_signing_key(settings.signing_key_path))
        forged = dataclasses.replace(
            config.links[2], public_share=oprf.public_element(oprf.new_key()).hex()
        )
        assert isinstance(forged, KeyholderLink)
        with pytest.raises(KeyholderConfigError, match="do not fit one key"):
            config.add(forged)
        with pytest.raises(KeyholderConfigError, match="does not match its public key"):
            config.check_member(config.key_set, 2, 3, oprf.public_element(5).hex())
