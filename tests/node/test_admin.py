"""The node's admin pages in process (httpx over ASGI, lifespan entered), on SQLite and PostgreSQL:
login, cookies, CSRF, lockout, session expiry, loopback only, policy editor, audit log, GDPR
requests, upload import and the approval queue's page side. Browser flows: tests/e2e."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import unescape
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, func, select, text, update

from aggregator.releases.chain import seal
from node.app import create_app
from node.ingest.generate import generate_export
from node.link import AggregatorLink, save_link
from node.services import audit
from node.services.admin_auth import set_password
from node.services.benchmark import ReleaseSource
from node.settings import NodeSettings
from node.storage.db import make_sessionmaker
from node.storage.models import (
    AdminLoginFailure,
    AdminSession,
    Admission,
    AuditEvent,
    GdprRequest,
    PendingApproval,
    PolicySetting,
)
from protocol.api import ChainEntry, ReleaseChain
from protocol.catalogue import DIMENSIONS
from protocol.figures import institution_label, sector_label
from protocol.signing import SigningKey, fingerprint, public_key_to_text
from tests.adminkit import PASSWORD, Admin, admin_client, csrf_of
from tests.aggregator.test_public_site import cell, document, table
from tests.factories import Row, write_rows
from tests.fedkit import assert_problem
from tests.nodekit import budget_tables, give_identifiers, make_node, make_spec, query_body

pytestmark = pytest.mark.anyio
IDENTIFIER = "klant3@example.nl"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class AdminNode:
    settings: NodeSettings
    app: FastAPI
    engine: Engine
    admin: Admin
    querier: object


@pytest.fixture
async def node(tmp_path: Path, db_url: str) -> AsyncIterator[AdminNode]:
    settings, querier = make_node(tmp_path, db_url, budget_rho=1.0, unsafe_disable_noise=True)
    from node.storage.db import make_engine

    engine = make_engine(settings.database_url)
    write_rows(
        engine,
        [
            Row(person=p, event_date=date(2025, 3, p), pc4=None if p == 2 else "3511")
            for p in range(1, 6)
        ],
    )
    give_identifiers(engine, settings, {p: f"klant{p}@example.nl" for p in range(1, 6)})
    advance_sequences(engine)
    set_password(make_sessionmaker(engine), PASSWORD)
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app), admin_client(app) as admin:
            yield AdminNode(settings, app, engine, admin, querier)
    finally:
        engine.dispose()


def advance_sequences(engine: Engine) -> None:
    """The factory writes rows with explicit ids; on PostgreSQL, move the id sequences past them
    so that a real import can follow (SQLite needs nothing)."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        for table in ("import_batch", "event", "person", "admission"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT coalesce(max(id), 1) FROM {table}))"
                )
            )


def audit_kinds(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(select(AuditEvent.kind).order_by(AuditEvent.seq)))


# -- access --------------------------------------------------------------------------------------


async def test_pages_need_a_login_and_the_cookie_is_locked_down(node: AdminNode) -> None:
    admin = node.admin
    for path in ("/admin/", "/admin/audit", "/admin/policy", "/admin/audit.csv"):
        response = await admin.page(path)
        assert response.status_code == 303 and response.headers["location"] == "/admin/login"
    wrong = await admin.login("not-the-password")
    assert wrong.status_code == 401 and "klopt niet" in wrong.text
    ok = await admin.login()
    assert ok.status_code == 303 and ok.headers["location"] == "/admin/"
    cookie = next(v for k, v in ok.headers.multi_items() if k == "set-cookie" and "pd_admin=" in v)
    lowered = cookie.lower()
    assert "secure" in lowered and "httponly" in lowered and "samesite=strict" in lowered
    assert "path=/admin" in lowered
    page = await admin.page("/admin/")
    assert page.status_code == 200 and "Privacybudget" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    # Only a hash of the session token is stored.
    token = cookie.split("pd_admin=", 1)[1].split(";", 1)[0]
    with node.engine.connect() as conn:
        stored = list(conn.scalars(select(AdminSession.token_sha256)))
    assert token not in stored and len(stored) == 1
    # Logging out ends the session.
    logout = await admin.submit("/admin/", "/admin/logout")
    assert logout.status_code == 303
    assert (await admin.page("/admin/")).status_code == 303


async def test_other_hosts_are_refused(node: AdminNode) -> None:
    async with admin_client(node.app, client_host="192.0.2.10") as remote:
        response = await remote.page("/admin/login")
    assert response.status_code == 403
    assert "alleen bereikbaar vanaf deze computer" in response.text


async def test_login_needs_its_form_token(node: AdminNode) -> None:
    response = await node.admin.client.post("/admin/login", data={"password": PASSWORD})
    assert response.status_code == 400
    assert "pd_admin=" not in response.headers.get("set-cookie", "")


async def test_lockout_after_repeated_failures(node: AdminNode) -> None:
    admin = node.admin
    for _ in range(node.settings.admin_max_failures - 1):
        assert (await admin.login("wrong-password!")).status_code == 401
    locked = await admin.login("wrong-password!")
    assert locked.status_code == 429 and "Te veel mislukte pogingen" in locked.text
    # Even the right password is refused while locked.
    assert (await admin.login()).status_code == 429
    kinds = audit_kinds(node.engine)
    assert kinds.count(audit.LOGIN_FAILED) == node.settings.admin_max_failures
    assert audit.LOCKED_OUT in kinds
    # The lock ends when the window has passed since the last failure.
    past = datetime.now(UTC) - timedelta(minutes=node.settings.admin_lockout_minutes + 1)
    with node.engine.begin() as conn:
        conn.execute(update(AdminLoginFailure).values(at=past))
    assert (await admin.login()).status_code == 303


@pytest.mark.parametrize("column", ["last_seen", "created_at"])
async def test_sessions_expire(node: AdminNode, column: str) -> None:
    admin = node.admin
    assert (await admin.login()).status_code == 303
    assert (await admin.page("/admin/")).status_code == 200
    age = (
        timedelta(minutes=node.settings.admin_session_idle_minutes + 1)
        if column == "last_seen"
        else timedelta(hours=node.settings.admin_session_max_hours, minutes=1)
    )
    with node.engine.begin() as conn:
        values = {column: datetime.now(UTC) - age}
        if column == "created_at":
            values["last_seen"] = datetime.now(UTC)
        conn.execute(update(AdminSession).values(**values))
    response = await admin.page("/admin/")
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login?expired=1"
    login = await admin.page("/admin/login", expired=1)
    assert "Je sessie is verlopen" in login.text
    with node.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(AdminSession)) == 0


async def test_every_form_needs_the_sessions_csrf_token(node: AdminNode) -> None:
    admin = node.admin
    await admin.login()
    for token in (None, "forged-token"):
        data = {"max_cells": "7", "approval": "auto", "all_dimensions": "on"}
        if token:
            data["csrf"] = token
        response = await admin.client.post("/admin/policy", data=data)
        assert response.status_code == 303
        assert response.headers["location"] == "/admin/policy?csrf=1"
    assert node.settings.max_cells == 20_000
    with node.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(PolicySetting)) == 0
    page = await admin.page("/admin/policy", csrf=1)
    assert "Dit formulier was verlopen" in page.text
    # The same token from another session does not work either.
    other_token = csrf_of(page.text)
    async with admin_client(node.app) as other:
        await other.login()
        response = await other.client.post(
            "/admin/privacy-requests/erase",
            data={"csrf": other_token, "identifier": IDENTIFIER, "checked": "on"},
        )
    assert response.headers["location"].endswith("?csrf=1")
    with node.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Admission)) == 5


# -- policy ----------------------------------------------------------------------------------------


async def test_policy_editor_changes_the_running_node_and_logs_it(node: AdminNode) -> None:
    admin = node.admin
    await admin.login()
    form = {
        "approval": "manual",
        "dim_month": "on",
        "dim_artform": "on",
        "max_cells": "500",
        "max_rho_per_query": "0,25",  # a Dutch decimal comma
        "budget_rho": "2",
        "analyst_budget_rho": "",
        "secure_max_worst_rho": "10",
        "secure_answers": "on",
    }
    response = await admin.submit("/admin/policy", "/admin/policy", form)
    assert response.status_code == 303, response.text
    settings = node.settings
    assert settings.approval == "manual"
    assert settings.allowed_dimensions == ["month", "artform"]
    assert settings.max_cells == 500 and settings.max_rho_per_query == 0.25
    assert settings.budget_rho == 2.0
    event = json.loads(_last_event(node.engine, audit.POLICY_CHANGE))
    assert event["changes"]["max_cells"] == {"old": 20000, "new": 500}
    assert event["changes"]["approval"] == {"old": "auto", "new": "manual"}
    # A node started again keeps the policy (it is stored, and overrides node.env).
    again = create_app(NodeSettings.load(node.settings.home))
    async with again.router.lifespan_context(again):
        assert again.state.node.settings.max_cells == 500
        assert again.state.node.settings.approval == "manual"
    # A bad value is refused with the field marked, and nothing changes.
    bad = await admin.submit("/admin/policy", "/admin/policy", {**form, "max_cells": "0"})
    assert bad.status_code == 422 and 'aria-invalid="true"' in bad.text
    assert settings.max_cells == 500


async def test_a_refused_dimension_is_refused_and_logged(node: AdminNode) -> None:
    admin = node.admin
    await admin.login()
    form = {
        "approval": "auto",
        "dim_month": "on",
        "max_cells": "20000",
        "budget_rho": "1",
        "max_rho_per_query": "0.5",
        "secure_max_worst_rho": "10",
    }
    assert (await admin.submit("/admin/policy", "/admin/policy", form)).status_code == 303
    response = await admin.client.post(
        "/v1/queries",
        content=query_body(node.querier, make_spec(group_by=("artform",))),  # type: ignore[arg-type]
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 403 and "policy_dimension_not_allowed" in response.text
    page = await admin.page("/admin/audit", kind="refusal")
    assert "Geweigerd" in page.text and "policy_dimension_not_allowed" in page.text


async def test_a_manual_node_refuses_a_direct_query_before_spending(node: AdminNode) -> None:
    """With approval set to manual, a signed query sent straight to POST /v1/queries (not
    through the aggregator, where the node waits for its operator) is refused with
    ``approval_required``: nothing is answered, filed or spent. Back on auto, it is answered."""
    admin = node.admin
    await admin.login()
    form = {
        "approval": "manual",
        "all_dimensions": "on",
        "secure_answers": "on",
        "max_cells": "20000",
        "budget_rho": "1",
        "max_rho_per_query": "0.5",
        "secure_max_worst_rho": "10",
    }
    assert (await admin.submit("/admin/policy", "/admin/policy", form)).status_code == 303
    before = budget_tables(node.engine)
    body = query_body(node.querier, make_spec(group_by=("month",)))  # type: ignore[arg-type]
    headers = {"content-type": "application/json"}
    response = await admin.client.post("/v1/queries", content=body, headers=headers)
    assert_problem(response, 403, "approval_required")
    assert budget_tables(node.engine) == before
    assert audit.ANSWER not in audit_kinds(node.engine)
    with node.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(PendingApproval)) == 0
    page = await admin.page("/admin/approvals")
    assert 'class="card"' not in page.text
    form["approval"] = "auto"
    assert (await admin.submit("/admin/policy", "/admin/policy", form)).status_code == 303
    again = query_body(node.querier, make_spec(group_by=("month",)))  # type: ignore[arg-type]
    assert (await admin.client.post("/v1/queries", content=again, headers=headers)).is_success


def _last_event(engine: Engine, kind: str) -> str:
    with engine.connect() as conn:
        body = conn.scalar(
            select(AuditEvent.body).where(AuditEvent.kind == kind).order_by(AuditEvent.seq.desc())
        )
    assert body is not None
    return body


# -- audit -----------------------------------------------------------------------------------------


async def test_audit_log_shows_what_left_the_node_and_exports_it(node: AdminNode) -> None:
    admin = node.admin
    await admin.login()
    spec = make_spec(group_by=("month",))
    response = await admin.client.post(
        "/v1/queries",
        content=query_body(node.querier, spec, analyst="onderzoeker"),  # type: ignore[arg-type]
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200
    released = json.loads(response.content)["payload"]["measures"][0]["values"]
    page = await admin.page("/admin/audit")
    assert page.status_code == 200
    assert "Logboek gecontroleerd" in page.text
    assert "Bezoeken per maand in 2025" in page.text
    assert "onderzoeker" in page.text and spec.query_id in page.text
    # Noise is off in this test: the page shows exactly the released values (5 visits in March).
    assert released[2] == 5
    table = re.search(r'<table class="data values">(.*?)</table>', page.text, re.S)
    assert table is not None, page.text[-3000:]
    cells = re.findall(r'<td class="num">(-?\d+)</td>', table.group(1))
    assert [int(c) for c in cells] == released
    # The signed answer, byte for byte as it left the node, is one click away.
    download = await admin.page(f"/admin/audit/answers/{spec.query_id}.json")
    assert download.status_code == 200 and download.content == response.content
    english = await admin.client.get("/admin/lang/en", params={"back": "/admin/audit"})
    assert english.status_code == 303
    page = await admin.page("/admin/audit")
    assert "Visits by month for 2025" in page.text and 'lang="en"' in page.text
    csv_response = await admin.page("/admin/audit.csv")
    assert csv_response.status_code == 200
    assert csv_response.headers["content-type"].startswith("text/csv")
    lines = csv_response.text.strip().splitlines()
    assert lines[0].startswith("seq,at,kind")
    assert any(",answer," in line and spec.query_id in line for line in lines[1:])


async def test_tampering_shows_on_the_audit_page(node: AdminNode) -> None:
    admin = node.admin
    await admin.login()
    await admin.submit(
        "/admin/policy",
        "/admin/policy",
        {
            "approval": "auto",
            "all_dimensions": "on",
            "max_cells": "100",
            "budget_rho": "1",
            "max_rho_per_query": "0.5",
            "secure_max_worst_rho": "10",
        },
    )
    with node.engine.begin() as conn:
        seq = conn.scalar(select(AuditEvent.seq).where(AuditEvent.kind == audit.POLICY_CHANGE))
        body = conn.scalar(select(AuditEvent.body).where(AuditEvent.seq == seq))
        conn.execute(
            update(AuditEvent).where(AuditEvent.seq == seq).values(body=body.replace("100", "900"))
        )
    page = await admin.page("/admin/audit")
    assert "Het logboek klopt niet meer" in page.text
    assert f"event {seq} was changed after it was written" in page.text


# -- GDPR ---------------------------------------------------------------------------------------


async def test_gdpr_access_and_erasure_with_confirmation(node: AdminNode) -> None:
    admin = node.admin
    await admin.login()
    # Without the identity check ticked, nothing happens.
    refused = await admin.submit(
        "/admin/privacy-requests", "/admin/privacy-requests/access", {"identifier": IDENTIFIER}
    )
    assert refused.status_code == 422 and "Bevestig eerst" in refused.text
    access = await admin.submit(
        "/admin/privacy-requests",
        "/admin/privacy-requests/access",
        {"identifier": IDENTIFIER, "checked": "on"},
    )
    assert access.status_code == 200 and 'id="person-admissions"' in access.text
    assert "03-03-2025" in access.text
    prepare = await admin.submit(
        "/admin/privacy-requests",
        "/admin/privacy-requests/prepare",
        {"identifier": IDENTIFIER, "checked": "on"},
    )
    assert "Er zijn 1 bezoek(en)" in prepare.text
    with node.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Admission)) == 5  # not yet
    erase = await admin.client.post(
        "/admin/privacy-requests/erase",
        data={"csrf": csrf_of(prepare.text), "identifier": IDENTIFIER, "checked": "on"},
    )
    assert "Gewist: 1 bezoek(en)" in erase.text
    with node.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Admission)) == 4
        actions = list(conn.scalars(select(GdprRequest.action).order_by(GdprRequest.id)))
        dump = "\n".join(
            str(row)
            for table in ("audit_event", "gdpr_request", "admin_session")
            for row in conn.execute(text(f"SELECT * FROM {table}"))
        )
    assert actions == ["access", "erasure"]
    assert IDENTIFIER not in dump and "klant3" not in dump
    again = await admin.submit(
        "/admin/privacy-requests",
        "/admin/privacy-requests/prepare",
        {"identifier": IDENTIFIER, "checked": "on"},
    )
    assert "Over deze persoon is niets opgeslagen" in again.text


# -- import -------------------------------------------------------------------------------------


async def _finished_job(admin: Admin, location: str) -> str:
    with anyio.fail_after(60):
        while True:
            page = await admin.page(location)
            assert page.status_code == 200
            if 'id="result"' in page.text:
                return page.text
            assert 'http-equiv="refresh"' in page.text
            await anyio.sleep(0.2)


async def test_upload_import_with_progress_and_rejects(node: AdminNode, tmp_path: Path) -> None:
    admin = node.admin
    await admin.login()
    export = tmp_path / "kassa.csv"
    generate_export(export, kind="theatre", rows=300, seed=7, year=2025, dirty_rows=3)
    page = await admin.page("/admin/import")
    with export.open("rb") as handle:
        response = await admin.client.post(
            "/admin/import",
            data={"csrf": csrf_of(page.text), "profile": "generic"},
            files={"file": ("kassa.csv", handle, "text/csv")},
        )
    assert response.status_code == 303
    refused = await _finished_job(admin, response.headers["location"])
    assert "niets geïmporteerd" in refused, re.findall(r"id=.result.>([^<]*)", refused)
    rows = re.findall(
        r"<tr><td class=\"num\">(\d+)</td><td>([^<]+)</td><td>([^<]+)</td></tr>", refused
    )
    assert len(rows) == 3 and all(int(line) > 1 for line, _, _ in rows)
    with node.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Admission)) == 5
    rejects = await admin.page(response.headers["location"] + "/rejects.csv")
    assert (
        rejects.text.startswith("file;line;column;reason") and len(rejects.text.splitlines()) == 4
    )
    # With "import the good rows" the rest goes in, and the upload is gone from disk.
    with export.open("rb") as handle:
        response = await admin.client.post(
            "/admin/import",
            data={"csrf": csrf_of(page.text), "profile": "generic", "skip_invalid": "on"},
            files={"file": ("kassa.csv", handle, "text/csv")},
        )
    done = await _finished_job(admin, response.headers["location"])
    assert "regels gelezen" in done and "3 afgewezen" in done
    with node.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Admission)) == 5 + 297
    assert list((node.settings.home / "uploads").rglob("*")) == []
    data = await admin.page("/admin/data")
    assert "kassa.csv" in data.text and "Zonder postcode" in data.text
    assert audit.IMPORT in audit_kinds(node.engine)


async def test_upload_import_refusals_are_explained(node: AdminNode, tmp_path: Path) -> None:
    admin = node.admin
    await admin.login()
    page = await admin.page("/admin/import")
    with node.engine.connect() as conn:
        before = conn.scalar(select(func.count()).select_from(Admission))
    export = tmp_path / "kassa.csv"
    generate_export(export, kind="theatre", rows=40, seed=7, year=2025, dirty_rows=5)
    with export.open("rb") as handle:  # 4 of 40 rows rejected: more than 5%
        response = await admin.client.post(
            "/admin/import",
            data={"csrf": csrf_of(page.text), "profile": "generic", "skip_invalid": "on"},
            files={"file": ("kassa.csv", handle, "text/csv")},
        )
    refused = await _finished_job(admin, response.headers["location"])
    result = " ".join(re.findall(r'id="result">([^<]*)', refused))
    assert "4 van de 40 regels zijn afgewezen, meer dan de toegestane 5%" in result
    assert 'id="rejects"' in refused
    header_only = tmp_path / "leeg.csv"
    header_only.write_text(export.read_text("utf-8-sig").splitlines()[0] + "\n", "utf-8")
    with header_only.open("rb") as handle:
        response = await admin.client.post(
            "/admin/import",
            data={"csrf": csrf_of(page.text), "profile": "generic"},
            files={"file": ("leeg.csv", handle, "text/csv")},
        )
    failed = await _finished_job(admin, response.headers["location"])
    assert "has column names but no rows; nothing was imported" in failed
    with node.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Admission)) == before


async def test_import_without_a_file_says_so(node: AdminNode) -> None:
    admin = node.admin
    await admin.login()
    response = await admin.submit("/admin/import", "/admin/import", {"profile": "generic"})
    assert response.status_code == 303 and response.headers["location"].endswith("error=no_file")
    assert "Kies eerst een bestand" in (await admin.page(response.headers["location"])).text


async def test_data_page_reports_quality_and_retention(tmp_path: Path, db_url: str) -> None:
    settings, _ = make_node(tmp_path, db_url, retention_days=365)
    from node.storage.db import make_engine

    engine = make_engine(settings.database_url)
    try:
        today = datetime.now(UTC).date()
        write_rows(
            engine,
            [
                Row(person=1, event_date=today - timedelta(days=400), pc4=None, age_band="unknown"),
                Row(person=2, event_date=today - timedelta(days=10), pc4=None, age_band="unknown"),
            ],
        )
        set_password(make_sessionmaker(engine), PASSWORD)
        app = create_app(settings)
        async with app.router.lifespan_context(app), admin_client(app) as admin:
            # The start-up retention run is done before the node serves anything.
            with engine.connect() as conn:
                assert conn.scalar(select(func.count()).select_from(Admission)) == 1
            await admin.login()
            page = await admin.page("/admin/data")
            assert "Bezoeken ouder dan 365 dagen" in page.text
            assert "Veel bezoekers zonder postcode" in page.text
            assert "Veel bezoeken zonder leeftijd" in page.text
            assert "De PC4-tabel is niet geladen" in page.text
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Admission)) == 1
        assert audit.RETENTION in audit_kinds(engine)
    finally:
        engine.dispose()


ADMIN_PAGES = (
    "/admin/",
    "/admin/data",
    "/admin/import",
    "/admin/approvals",
    "/admin/audit",
    "/admin/policy",
    "/admin/privacy-requests",
    "/admin/benchmark",
)


async def test_the_admin_pages_have_no_external_assets_or_scripts(node: AdminNode) -> None:
    admin = node.admin
    await admin.login()
    for path in ADMIN_PAGES:
        for lang in ("nl", "en"):
            await admin.client.get(f"/admin/lang/{lang}")
            page = await admin.page(path)
            assert page.status_code == 200, path
            html = page.text
            assert f'<html lang="{lang}">' in html
            assert "<script" not in html
            assert not re.search(
                r'(src|href)="(https?:)?//',
                html.replace(
                    'href="http://',
                    'href="LINK://',  # links to the aggregator are fine, loads are not
                ),
            ), path
            assert html.count("<h1") == 1, path
            assert 'href="#main"' in html
    css = await admin.page("/admin/static/admin.css")
    assert css.status_code == 200 and "@import" not in css.text and "url(" not in css.text


async def test_the_sector_comparison_says_sector_visitors_are_summed_not_deduplicated(
    node: AdminNode,
) -> None:
    """On "us and the sector", a persons table compares our own distinct visitors (deduplicated
    within this institution) with the sector's sum of such counts, and the page says which is
    which; other measures keep the plain headers."""
    key = SigningKey.generate()
    ages = [
        cell((code,), code, code, 10.0 * (i + 1), 2.0) for i, code in enumerate(("lt18", "18_29"))
    ]
    tables = (table("visits-age", ("age_band",), ages, "visits"),
              table("persons-age", ("age_band",), ages, "persons"))  # fmt: skip
    sealed = seal(document(1, None, 1, None).model_copy(update={"tables": tables}), key)
    chain = ReleaseChain(
        aggregator="Sector", key_id=key.key_id, public_key=public_key_to_text(key.public),
        fingerprint=fingerprint(key.public), keys={},
        releases=[ChainEntry(sequence=1, slug=sealed.slug, hash=sealed.hash,
                             json_path=f"/releases/{sealed.slug}.json", page_path="/nl/")],
    )  # fmt: skip

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/releases":
            return httpx.Response(200, content=chain.model_dump_json())
        return httpx.Response(200, content=sealed.data)

    save_link(
        node.settings.home,
        AggregatorLink(
            url="http://aggregator.test", node_id="n1", institution="Testtheater",
            aggregator_key=public_key_to_text(key.public), aggregator_key_id=key.key_id,
            joined_at=datetime.now(UTC),
        ),
    )  # fmt: skip
    node.app.state.node.releases = ReleaseSource(
        client=httpx.Client(transport=httpx.MockTransport(serve))
    )
    await node.admin.login()
    for lang in ("nl", "en"):
        await node.admin.client.get(f"/admin/lang/{lang}")
        page = (await node.admin.page("/admin/benchmark")).text
        sections = dict(
            re.findall(
                r'<section aria-labelledby="b-([^"]+)" class="bench">(.*?)</section>', page, re.S
            )
        )
        assert set(sections) == {"visits-age", "persons-age"}, page
        persons, visits = sections["persons-age"], sections["visits-age"]
        heads = re.findall(r'<th scope="col"[^>]*>([^<]*)</th>', persons)
        assert heads[1].endswith(f"({institution_label('persons', lang)})"), heads
        assert heads[3].endswith(f"({sector_label('persons', lang)})"), heads
        assert ("niet ontdubbeld" if lang == "nl" else "not deduplicated") in persons
        assert "persons-note" in persons and "persons-note" not in visits
        assert re.findall(r'<th scope="col"[^>]*>([^<]*)</th>', visits)[3] == "Sector"


# -- language ------------------------------------------------------------------------------------


def _visible_text(html: str) -> str:
    """The words a reader sees: tags, attributes, comments and the head left out."""
    body = html.split("<body", 1)[-1]
    body = re.sub(r"<!--.*?-->", " ", body, flags=re.S)
    return unescape(re.sub(r"<[^>]+>", " ", body))


def _labelled_codes() -> dict[str, str]:
    """Every catalogue code that has a Dutch label of its own (a number such as the visit
    frequency "2" reads the same in both, so it cannot be told from a figure; "cabaret" is a word
    of its own label)."""
    codes: dict[str, str] = {}
    for dim in DIMENSIONS.values():
        for value in dim.values:
            if value.code.lower() not in value.nl.lower() and not value.code.isdigit():
                codes[value.code] = dim.name
    return codes


async def test_dutch_admin_pages_show_labels_not_catalogue_codes(
    tmp_path: Path, db_url: str
) -> None:
    """A Dutch operator reads "45 tot 65 jaar" and "goedkeuring: automatisch → handmatig", never
    ``45_64``, ``cdm_07`` or ``approval: auto → manual``: on every page, with queries on every
    labelled dimension, a filter, a refusal and a policy change in the log."""
    settings, querier = make_node(tmp_path, db_url, budget_rho=5.0, unsafe_disable_noise=True)
    from node.storage.db import make_engine

    engine = make_engine(settings.database_url)
    write_rows(
        engine,
        [
            Row(person=p, event_date=date(2025, 3, p), age_band="45_64", segment="cdm_07")
            for p in range(1, 6)
        ],
    )
    give_identifiers(engine, settings, {1: IDENTIFIER})
    advance_sequences(engine)
    set_password(make_sessionmaker(engine), PASSWORD)
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app), admin_client(app) as admin:
            await admin.login()
            await admin.client.get("/admin/lang/nl")
            labelled = sorted({d for d in _labelled_codes().values()})
            for dim in labelled:
                spec = make_spec(
                    group_by=(dim,), rho=0.01, filters={"segment": ("cdm_07", "unknown")}
                )
                response = await admin.client.post(
                    "/v1/queries",
                    content=query_body(querier, spec),
                    headers={"content-type": "application/json"},
                )
                assert response.status_code == 200, (dim, response.text)
            form = {
                "approval": "manual",
                "dim_month": "on",
                "dim_age_band": "on",
                "max_cells": "500",
                "max_rho_per_query": "0,25",
                "budget_rho": "5",
                "secure_max_worst_rho": "10",
            }
            assert (await admin.submit("/admin/policy", "/admin/policy", form)).status_code == 303
            refused = await admin.client.post(
                "/v1/queries",
                content=query_body(querier, make_spec(group_by=("segment",))),
                headers={"content-type": "application/json"},
            )
            assert refused.status_code == 403
            access = await admin.submit(
                "/admin/privacy-requests",
                "/admin/privacy-requests/access",
                {"identifier": IDENTIFIER, "checked": "on"},
            )
            assert 'id="person-admissions"' in access.text
            codes = _labelled_codes()
            found: dict[str, list[str]] = {}
            for path in (*ADMIN_PAGES, "access"):
                page = access if path == "access" else await admin.page(path)
                assert page.status_code == 200 and '<html lang="nl">' in page.text, path
                text = _visible_text(page.text)
                for code in codes:
                    if re.search(rf"(?<![\w-]){re.escape(code)}(?![\w-])", text):
                        found.setdefault(path, []).append(code)
                for raw in ("approval", "auto → manual", "max_cells", "budget_rho", "ρ = 0.01"):
                    if raw in text:
                        found.setdefault(path, []).append(raw)
            assert found == {}
            audit_page = _visible_text((await admin.page("/admin/audit")).text)
            assert "alleen segment: CDM-segment 7, onbekend" in audit_page
            assert "goedkeuring: automatisch → handmatig" in audit_page
            assert "ρ = 0,01 · (ε, δ) = (0,69, 1e-07)" in audit_page
            policy_page = _visible_text((await admin.page("/admin/policy")).text)
            assert "maximaal aantal cellen: 20000 → 500" in policy_page
            policy_html = (await admin.page("/admin/policy")).text
            assert 'name="max_rho_per_query" type="text" inputmode="decimal" value="0,25"' in (
                policy_html
            )
    finally:
        engine.dispose()
