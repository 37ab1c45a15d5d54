"""Releases: post-processing, sealing and the chain, composing from real rounds, the publishing
API (refusals publish nothing) and the verify-release command."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from typer.testing import CliRunner

from aggregator.home import load_signing_key
from aggregator.releases import recipe
from aggregator.releases.chain import (
    SealedRelease,
    UnverifiableRelease,
    parse,
    release_hash,
    seal,
    verify_chain,
)
from aggregator.releases.compose import ComposeError, compose
from aggregator.releases.document import (
    RELEASE,
    Cell,
    Methodology,
    PostProcessing,
    ReleaseDocument,
    Table,
    TableCoverage,
    TablePrivacy,
    Text,
)
from aggregator.storage.db import make_async_engine, make_async_sessionmaker
from aggregator.storage.models import Release
from protocol import publication as postprocess
from protocol.canonical import canonical_bytes
from protocol.privacy_loss import zcdp_to_epsilon
from protocol.query import Measure
from protocol.results import Z95, RoundResult
from protocol.signing import SigningKey, public_key_to_text, sign
from publieksdata.cli import app as cli
from tests.aggregator.test_pooled import audience
from tests.fedkit import Federation, federation

T = Text(nl="x", en="x")


# --- post-processing ------------------------------------------------------------------------


def test_rounding_step_is_a_tenth_of_the_half_width_as_a_power_of_ten() -> None:
    assert postprocess.rounding_step(0.5) == 1
    assert postprocess.rounding_step(9.9) == 1
    assert postprocess.rounding_step(10) == 1
    assert postprocess.rounding_step(99) == 1
    assert postprocess.rounding_step(100) == 10
    assert postprocess.rounding_step(4_300) == 100
    assert postprocess.round_to(4_123_456, 100) == 4_123_500
    assert postprocess.round_to(-149, 100) == -100
    assert postprocess.round_to(150, 100) == 200  # half away from zero, not to even


def test_too_wide_figures_are_dots_and_intervals_are_clipped_at_zero() -> None:
    figure = postprocess.publish_figure(0, 30.0, suppress_above=None)
    assert figure.value == 0 and figure.lower == 0 and figure.upper is not None
    assert figure.upper == postprocess.round_to(Z95 * 30, postprocess.rounding_step(Z95 * 30))
    dot = postprocess.publish_figure(100, 40.0, suppress_above=0.5)  # ± 78 on 100
    assert dot.suppressed and dot.value is None and dot.lower is None
    kept = postprocess.publish_figure(1000, 40.0, suppress_above=0.5)
    assert not kept.suppressed and kept.value == 1000
    zero = postprocess.publish_figure(0, 2.0, suppress_above=0.5)
    assert zero.suppressed  # 0 ± something: infinitely wide relative to the figure


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**7), st.floats(0.1, 5_000), st.one_of(st.none(), st.floats(0.05, 2)))
def test_every_interval_holds_its_whole_figure(value: int, se: float, limit: float | None) -> None:
    figure = postprocess.publish_figure(value, se, suppress_above=limit)
    if figure.suppressed:
        return
    assert figure.value is not None and figure.lower is not None and figure.upper is not None
    assert 0 <= figure.lower <= figure.value <= figure.upper
    assert figure.value == value and figure.rounded_to == 1


def methodology(**changes: Any) -> Methodology:
    """A release's methodology for tests; ``changes`` replace fields."""
    base = Methodology(
        rho_total=0.1,
        epsilon_total=1.9,
        delta_total=1e-7,
        mechanisms=("gaussian",),
        modes=("secure",),
        catalogue_version="1",
        period_start=date(2025, 1, 1),
        period_end=date(2025, 12, 31),
        institutions=("A", "B"),
        institutions_asked=5,
        post_processing=PostProcessing(),
        privacy_explanation="privacy",
    )
    return base.model_copy(update=changes)


def document(sequence: int, previous: str | None, *, version: int = 1, corrects: str | None = None,
             release_id: str = "sector-2025") -> ReleaseDocument:  # fmt: skip
    cell = Cell(codes=("theatre",), labels=T, value=1200.0, lower=1100.0, upper=1300.0,
                standard_error=51.0, rounded_to=10)  # fmt: skip
    table = Table(
        table_id="visits-artform",
        title=T,
        round_id="r1",
        measure="visits",
        unit=T,
        group_by=("artform",),
        dimension_titles=(T,),
        cells=(cell,),
        total=cell.model_copy(update={"codes": ("total",)}),
        privacy=TablePrivacy(mode="secure", mechanism="gaussian", rho=0.1,
                             epsilon=zcdp_to_epsilon(0.1, 1e-7), delta=1e-7, threshold=4),
        coverage=TableCoverage(institutions=5, answered=5),
        bounds={"max_visits_per_person": 12},
    )  # fmt: skip
    return ReleaseDocument(
        release_id=release_id,
        version=version,
        sequence=sequence,
        previous_hash=previous,
        corrects=corrects,
        correction_note=T if corrects else None,
        published_at=datetime(2026, 1, sequence, tzinfo=UTC),
        recipe="test",
        title=T,
        description=T,
        summary=T,
        methodology=methodology(),
        tables=(table,),
    )


def chain_of(key: SigningKey, count: int) -> list[SealedRelease]:
    sealed: list[SealedRelease] = []
    for i in range(count):
        previous = sealed[-1].hash if sealed else None
        corrects = sealed[0].hash if i == 2 else None
        sealed.append(
            seal(
                document(
                    i + 1,
                    previous,
                    version=3 if i == 2 else 1,
                    corrects=corrects,
                    release_id="sector-2025" if i == 2 else f"r{i}",
                ),
                key,
            )
        )
    return sealed


def test_an_intact_chain_verifies() -> None:
    key = SigningKey.generate()
    sealed = chain_of(key, 4)
    report = verify_chain([s.data for s in sealed], key.public)
    assert report.ok, report.problems
    assert report.checked == 4 and report.head == sealed[-1].hash
    assert parse(sealed[1].data)[1] == sealed[1].document


def test_a_changed_byte_anywhere_in_any_release_is_detected() -> None:
    key = SigningKey.generate()
    sealed = chain_of(key, 3)
    data = [s.data for s in sealed]
    for victim in range(3):
        original = data[victim]
        # A sample of positions across the whole file, including the figures and the signature.
        for position in range(0, len(original), max(1, len(original) // 97)):
            changed = bytearray(original)
            changed[position] = changed[position] ^ 0x01
            tampered = [*data[:victim], bytes(changed), *data[victim + 1 :]]
            report = verify_chain(tampered, key.public)
            assert not report.ok, f"byte {position} of release {victim + 1} changed unnoticed"


def test_an_edited_figure_with_valid_json_is_named_in_the_report() -> None:
    key = SigningKey.generate()
    sealed = chain_of(key, 2)
    text = sealed[0].data.decode().replace('"value":1200', '"value":1500', 1)
    assert text != sealed[0].data.decode()
    report = verify_chain([text.encode(), sealed[1].data], key.public)
    reasons = [str(p) for p in report.problems]
    assert any("sequence 1" in r and "signature" in r for r in reasons), reasons
    assert any("sequence 2" in r and "link to the previous release" in r for r in reasons)


def test_a_release_that_could_not_be_verified_is_not_sealed() -> None:
    """A figure near 2**53 − 1 becomes, with its interval, a number with no exact JSON form once
    parsed back: such a release could be signed but never verified, so it is refused."""
    key = SigningKey.generate()
    base = document(1, None)
    table = base.tables[0]
    top = float(2**53 - 1)
    cell = table.cells[0].model_copy(update={"value": top, "upper": top + 200.0})
    huge = base.model_copy(update={"tables": (table.model_copy(update={"cells": (cell,)}),)})
    with pytest.raises(UnverifiableRelease, match="no canonical JSON form"):
        seal(huge, key)
    # Signed anyway (as before this check), verify-release reports it instead of crashing.
    envelope = sign(RELEASE, huge.model_dump(mode="json"), key)
    data = canonical_bytes(envelope.model_dump(mode="json"))
    report = verify_chain([data], key.public)
    assert not report.ok
    assert any("no canonical JSON form" in p.reason for p in report.problems), report.problems


def test_a_release_removed_from_the_middle_of_the_chain_is_detected() -> None:
    key = SigningKey.generate()
    sealed = chain_of(key, 4)
    report = verify_chain([sealed[0].data, sealed[2].data, sealed[3].data], key.public)
    reasons = [str(p) for p in report.problems]
    assert not report.ok
    assert any("1 release(s) missing" in r for r in reasons), reasons
    assert any("link to the previous release" in r for r in reasons), reasons


def test_a_missing_first_release_and_a_foreign_key_are_detected() -> None:
    key = SigningKey.generate()
    sealed = chain_of(key, 3)
    assert not verify_chain([s.data for s in sealed[1:]], key.public).ok
    other = SigningKey.generate()
    report = verify_chain([s.data for s in sealed], other.public)
    assert len(report.problems) == 3  # every signature
    assert not verify_chain([], key.public).ok


# --- composing from rounds, and the API ------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def volume_recipe(round_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "release_id": "test-2025",
        "title": {"nl": "Toets", "en": "Test"},
        "description": {"nl": "Beschrijving", "en": "Description"},
        "tables": [
            {"table_id": "visits-month", "round": round_id, "measure": "visits", "by": ["month"]},
            {"table_id": "visits", "round": round_id, "measure": "visits"},
        ],
        **extra,
    }


async def publish(fed: Federation, body: dict[str, Any], token: str | None = None) -> Any:
    return await fed.client.post("/v1/releases", json=body, headers=fed.as_(token or fed.admin))


async def release_count(fed: Federation) -> int:
    engine = make_async_engine(fed.settings.database_url)
    try:
        async with make_async_sessionmaker(engine)() as session:
            return int(await session.scalar(select(func.count()).select_from(Release)) or 0)
    finally:
        await engine.dispose()


async def volume_round(fed: Federation, **extra: Any) -> RoundResult:
    created = await fed.ask(
        report={"name": "volume", "year": 2025, "rho": 0.5, **extra}, deadline_seconds=20
    )
    return await fed.wait(created.round_id)


@pytest.mark.anyio
async def test_a_release_from_a_real_round_sums_and_post_processes_it(tmp_path: Path) -> None:
    rows = [audience(i, 300, seed=70 + i) for i in range(3)]
    async with federation(tmp_path, rows) as fed:
        result = await volume_round(fed, mode="independent")
        assert result.measures, result
        response = await publish(fed, {"recipe": volume_recipe(result.round_id)})
        assert response.status_code == 201, response.text
        published = response.json()
        assert published["version"] == 1 and published["sequence"] == 1
        assert published["path"] == "/nl/releases/test-2025-v1"

        chain = (await fed.client.get("/v1/releases")).json()
        assert [e["slug"] for e in chain["releases"]] == ["test-2025-v1"]
        engine = make_async_engine(fed.settings.database_url)
        async with make_async_sessionmaker(engine)() as session:
            row = await session.scalar(select(Release))
        await engine.dispose()
        assert row is not None and release_hash(row.data) == published["hash"]
        envelope, doc = parse(row.data)
        assert envelope.key_id == chain["key_id"]
        key = load_signing_key(fed.settings.signing_key_path)
        assert chain["public_key"] == public_key_to_text(key.public)
        assert verify_chain([row.data], key.public).ok

    spec = result.spec
    visits = result.measure(Measure.VISITS)
    by_month = doc.table("visits-month")
    months = spec.domain("month")
    assert [c.codes for c in by_month.cells] == [(m,) for m in months]
    position = spec.group_by.index("month")
    for cell in by_month.cells:
        members = [i for i, key in enumerate(spec.cells()) if key[position] == cell.codes[0]]
        raw = sum(visits.estimates[i] for i in members)
        se = math.sqrt(math.fsum(visits.standard_errors[i] ** 2 for i in members))
        assert cell.standard_error == pytest.approx(se)
        # Consistency moves a figure by much less than its margin; it stays a whole number.
        if cell.value is not None:
            assert cell.value >= 0 and cell.value == int(cell.value)
            assert abs(cell.value - max(raw, 0)) < Z95 * se
    assert by_month.total is not None and by_month.total.value is not None
    assert abs(by_month.total.value - sum(visits.estimates)) < 1
    full = doc.table("visits")
    assert len(full.cells) == spec.cell_count
    assert full.total is not None and full.total.value == by_month.total.value
    assert doc.methodology.rho_total == pytest.approx(0.5)  # one round, counted once
    assert doc.methodology.epsilon_total == pytest.approx(zcdp_to_epsilon(0.5, spec.privacy.delta))
    assert doc.methodology.institutions == ("Instelling 0", "Instelling 1", "Instelling 2")
    assert doc.tables[0].privacy.mode == "independent"
    assert "2025" in doc.summary.nl and "bezoeken" in doc.summary.nl


@pytest.mark.anyio
async def test_publishing_from_a_missing_or_failed_round_publishes_nothing(
    tmp_path: Path,
) -> None:
    rows = [audience(i, 100, seed=80 + i) for i in range(2)]
    # The second node never starts: a round of both closes at its deadline without a quorum.
    async with federation(
        tmp_path, rows, agg_settings={"min_quorum": 2}, start_nodes=lambda i: i == 0
    ) as fed:
        response = await publish(fed, {"recipe": volume_recipe("no-such-round")})
        assert response.status_code == 409, response.text
        body = response.json()
        assert body["code"] == "release_not_possible"
        assert "was not found" in body["detail"]
        assert len(body["problems"]) == 2  # both tables named

        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.1, "mode": "independent"},
            deadline_seconds=2,
        )
        await fed.expire(created.round_id, silent=1)
        failed = await fed.wait(created.round_id)
        assert not failed.measures
        response = await publish(fed, {"recipe": volume_recipe(failed.round_id)})
        assert response.status_code == 409
        assert "quorum" in response.json()["detail"]

        analyst = await publish(fed, {"recipe": volume_recipe(failed.round_id)}, fed.analyst)
        assert analyst.status_code == 403
        bad = await publish(fed, {"recipe": {"release_id": "Bad Name"}})
        assert bad.status_code == 422 and bad.json()["code"] == "recipe_invalid"
        unknown = await publish(fed, {"recipe": "standard-twenty"})
        assert unknown.status_code == 422
        assert await release_count(fed) == 0


@pytest.mark.anyio
async def test_a_correction_is_a_new_version_that_points_to_the_old_one(
    tmp_path: Path, db_url: str
) -> None:
    rows = [audience(i, 120, seed=90 + i) for i in range(2)]
    async with federation(tmp_path, rows, agg_db_url=db_url) as fed:
        result = await volume_round(fed)  # secure (the default under rho)
        assert result.measures, result
        first = await publish(fed, {"recipe": volume_recipe(result.round_id)})
        assert first.status_code == 201, first.text
        again = await publish(fed, {"recipe": volume_recipe(result.round_id)})
        assert again.status_code == 409 and "correction" in again.json()["detail"]
        second = await publish(
            fed,
            {
                "recipe": volume_recipe(result.round_id),
                "correction": {"nl": "Titel verbeterd", "en": "Title fixed"},
            },
        )
        assert second.status_code == 201, second.text
        assert second.json()["version"] == 2 and second.json()["sequence"] == 2
        assert second.json()["corrects"] == first.json()["hash"]
        engine = make_async_engine(fed.settings.database_url)
        async with make_async_sessionmaker(engine)() as session:
            data = list(await session.scalars(select(Release.data).order_by(Release.sequence)))
        await engine.dispose()
        key = load_signing_key(fed.settings.signing_key_path)
        assert verify_chain(data, key.public).ok
        _, doc = parse(data[1])
        assert doc.previous_hash == first.json()["hash"]
        assert doc.tables[0].privacy.mode == "secure" and doc.tables[0].privacy.threshold


def test_compose_refuses_an_open_round_and_persons_summed_over_cells() -> None:
    loaded = recipe.parse(
        {
            "release_id": "x",
            "title": {"nl": "x", "en": "x"},
            "description": {"nl": "x", "en": "x"},
            "tables": [{"table_id": "p", "round": "r", "measure": "persons", "by": ["month"]}],
        }
    )
    with pytest.raises(ComposeError, match="not found"):
        compose(loaded, {"p": None}, version=1, sequence=1, previous_hash=None, corrects=None,
                published_at=datetime.now(UTC))  # fmt: skip


def test_recipes_load_from_toml_and_builtin_names(tmp_path: Path) -> None:
    builtin = recipe.load("standard-2025")
    assert builtin.release_id == "sector-2025"
    assert set(builtin.reports_to_ask()) == {
        "volume",
        "reach_age",
        "origin_province",
        "segment_profile",
    }
    path = tmp_path / "r.toml"
    path.write_text(
        'release_id = "museum-2025"\nyear = 2025\n'
        'title = { nl = "Musea", en = "Museums" }\n'
        'description = { nl = "Musea", en = "Museums" }\n'
        "[[table]]\n"
        'table_id = "visits"\nreport = "volume"\nmeasure = "visits"\nby = ["month"]\n',
        encoding="utf-8",
    )
    assert recipe.load(str(path)).tables[0].by == ("month",)
    path.write_text('release_id = "x"\n[[table]]\ntable_id = "a"\n', encoding="utf-8")
    with pytest.raises(recipe.RecipeError, match="title"):
        recipe.load(str(path))
    with pytest.raises(recipe.RecipeError, match="not a built-in recipe"):
        recipe.load("nothing-here")


# --- verify-release --------------------------------------------------------------------------


def test_verify_release_checks_files_and_names_what_is_wrong(tmp_path: Path) -> None:
    key = SigningKey.generate()
    sealed = chain_of(key, 3)
    for s in sealed:
        (tmp_path / f"{s.slug}.json").write_bytes(s.data)
    runner = CliRunner()
    key_text = public_key_to_text(key.public)
    target = tmp_path / f"{sealed[2].slug}.json"
    ok = runner.invoke(cli, ["verify-release", str(target), "--key", key_text])
    assert ok.exit_code == 0, ok.output
    assert "chain is intact" in ok.output and "3 release(s) checked" in ok.output

    (tmp_path / f"{sealed[1].slug}.json").unlink()
    broken = runner.invoke(cli, ["verify-release", str(target), "--key", key_text])
    assert broken.exit_code == 1
    assert "missing before it" in broken.output

    no_key = runner.invoke(cli, ["verify-release", str(target)])
    assert no_key.exit_code == 2 and "--key" in no_key.output
    data = json.loads(sealed[0].data)
    data["payload"]["title"]["nl"] = "Anders"
    (tmp_path / f"{sealed[0].slug}.json").write_text(json.dumps(data), encoding="utf-8")
    edited = runner.invoke(cli, ["verify-release", str(tmp_path), "--key", key_text])
    assert edited.exit_code == 1 and "signature does not match" in edited.output


@pytest.mark.anyio
async def test_concurrent_publications_form_one_unbroken_chain(tmp_path: Path, db_url: str) -> None:
    import asyncio

    rows = [audience(i, 100, seed=60 + i) for i in range(2)]
    async with federation(tmp_path, rows, agg_db_url=db_url) as fed:
        result = await volume_round(fed, mode="independent")
        bodies = [
            {"recipe": volume_recipe(result.round_id, release_id=f"parallel-{i}")} for i in range(4)
        ]
        responses = await asyncio.gather(*(publish(fed, body) for body in bodies))
        assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
        assert sorted(r.json()["sequence"] for r in responses) == [1, 2, 3, 4]
        chain = (await fed.client.get("/v1/releases")).json()["releases"]
        data = [(await fed.client.get(entry["json_path"])).content for entry in chain]
        key = load_signing_key(fed.settings.signing_key_path)
        assert verify_chain(data, key.public).ok


def test_releases_signed_before_a_key_rotation_verify_with_the_retired_key() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    first = seal(document(1, None), old)
    second = seal(document(2, first.hash, release_id="r2"), new)
    data = [first.data, second.data]
    assert verify_chain(data, {old.key_id: old.public, new.key_id: new.public}).ok
    report = verify_chain(data, new.public)
    assert [p.where for p in report.problems] == ["sequence 1 (sector-2025-v1)"]
    assert f"signed by key {old.key_id}" in report.problems[0].reason


@pytest.mark.anyio
async def test_the_site_vouches_for_its_retired_keys(tmp_path: Path) -> None:
    import httpx
    import typer

    from aggregator.app import create_app
    from aggregator.home import rotate_signing_key
    from aggregator.releases import store
    from protocol.api import ReleaseChain
    from publieksdata.releases import _keyring
    from tests.fedkit import make_aggregator

    settings = make_aggregator(tmp_path / "aggregator")
    old = load_signing_key(settings.signing_key_path)
    first = seal(document(1, None), old)
    _, new = rotate_signing_key(settings)
    second = seal(document(2, first.hash, release_id="r2"), new)
    engine = make_async_engine(settings.database_url)
    async with make_async_sessionmaker(engine)() as session, session.begin():
        for sealed in (first, second):
            await store.append(session, sealed, datetime.now(UTC))
    await engine.dispose()
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://agg") as client,
    ):
        index = ReleaseChain.model_validate((await client.get("/v1/releases")).json())
        data = [(await client.get(e.json_path)).content for e in index.releases]
    assert index.key_id == new.key_id
    keys = _keyring(index, new.public)
    assert set(keys) == {old.key_id, new.key_id}
    assert verify_chain(data, keys).ok
    with pytest.raises(typer.Exit):
        _keyring(index, SigningKey.generate().public)  # not vouched for by the trusted key
