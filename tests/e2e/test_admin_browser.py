"""The node's admin pages in real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium), against real processes: an aggregator and one node
(``publieksdata node serve``) joined to it, on loopback.

The flows an operator runs: log in (a wrong password first), upload an export and watch the
import finish with its reject report, approve a waiting query and see the aggregator receive
the answer, erase a person, read the audit log with the exact values that left, and compare the
institution with the published sector release. Every page is also opened in English. Screenshots
go to ``build/test-artifacts/admin-*.png``. Without Chromium the tests skip, unless
PUBLIEKSDATA_REQUIRE_BROWSER=1 (set by .ci/run).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from aggregator.services.tokens import Role
from node.ingest.generate import generate_export
from node.services.admin_auth import set_password
from node.settings import NodeSettings
from node.storage.db import make_engine, make_sessionmaker
from node.storage.models import Admission
from protocol.query import Mode
from protocol.reports import report, year_period
from protocol.results import NodeStatus, RoundResult, RoundState
from publieksdata.demo import demo_recipe
from publieksdata.processes import Service, free_port, start
from tests.adminkit import PASSWORD
from tests.e2e.test_federation_process import _join
from tests.e2e.test_site_browser import _console_errors, layout_problems
from tests.e2e.test_site_browser import _shot as shot
from tests.factories import Row
from tests.fedkit import make_aggregator, make_token, node_with_rows
from tests.nodekit import give_identifiers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
CHILD_ENV = {"PUBLIEKSDATA_LOG_LEVEL": "warning"}
IDENTIFIER = "vaste.bezoeker@example.nl"


@dataclass
class Setup:
    agg_url: str
    node_url: str
    analyst: str
    admin_token: str
    node: NodeSettings
    export: Path


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("admin")
    agg = make_aggregator(root / "aggregator", None, min_quorum=1)
    admin_token = asyncio.run(make_token(agg, Role.ADMIN, "beheer"))
    analyst = asyncio.run(make_token(agg, Role.ANALYST, "analist"))
    rows = [
        Row(
            person=p, event_date=date(2025, 1 + p % 12, 10), artform="theatre" if p % 2 else "music"
        )
        for p in range(1, 41)
    ]
    node, engine = node_with_rows(
        root / "node",
        "Schouwburg Test",
        rows,
        approval="manual",
        poll_wait_seconds=1.0,
    )
    give_identifiers(engine, node, {7: IDENTIFIER})
    set_password(make_sessionmaker(engine), PASSWORD)
    engine.dispose()
    export = root / "kassa-2025.csv"
    generate_export(export, kind="theatre", rows=400, seed=3, year=2025, dirty_rows=2)
    port = free_port()
    aggregator: Service = start(
        "aggregator",
        ["aggregator", "serve", "--home", str(agg.home), "--port", str(port)],
        port,
        root / "aggregator.log",
        CHILD_ENV,
    )
    services = [aggregator]
    try:
        aggregator.wait_healthy(60)
        asyncio.run(_join(aggregator.url, admin_token, node))
        node_port = free_port()
        node_service = start(
            node.institution,
            ["node", "serve", "--home", str(node.home), "--port", str(node_port)],
            node_port,
            root / "node.log",
            CHILD_ENV,
        )
        services.append(node_service)
        node_service.wait_healthy(60)
        yield Setup(aggregator.url, node_service.url, analyst, admin_token, node, export)
    finally:
        for service in reversed(services):
            service.stop()


def _shot(driver: Any, name: str) -> None:
    shot(driver, f"admin-{name}", width=1366, tallest=8_000)


def _wait_for(driver: Any, css: str, timeout: float = 30, reload: bool = False) -> Any:
    from selenium.common.exceptions import NoSuchElementException
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while True:
        try:
            return driver.find_element(By.CSS_SELECTOR, css)
        except NoSuchElementException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
            if reload:
                driver.refresh()


def _text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)


def _submit(driver: Any, form_css: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"{form_css} button[type=submit]").click()


def test_01_login(federation: Setup, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{federation.node_url}/admin/")
    assert browser.current_url.endswith("/admin/login")
    # The language follows the browser's (English here) until the operator chooses.
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    browser.find_element(By.LINK_TEXT, "Nederlands").click()
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "nl"
    field = browser.find_element(By.ID, "password")
    field.send_keys("dit-is-het-niet")
    _submit(browser, "form")
    assert "Dat wachtwoord klopt niet." in _wait_for(browser, ".flash.error").text
    _shot(browser, "login-failed")
    logged = _console_errors(browser)  # the refused login is a 401, which Chromium logs
    assert all("status of 401" in line for line in logged), logged
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    _submit(browser, "form")
    gauge = _wait_for(browser, "#gauge")
    assert browser.current_url.endswith("/admin/")
    cookie = browser.get_cookie("pd_admin")
    assert cookie is not None and cookie["httpOnly"] and cookie["secure"]
    assert cookie["sameSite"] == "Strict"
    text = _text(browser)
    assert "Privacybudget" in text and "Verbonden met" in text
    assert gauge.get_attribute("value") == "0"
    _shot(browser, "overview-nl")
    assert _console_errors(browser) == []


def test_02_upload_import(federation: Setup, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{federation.node_url}/admin/import")
    from selenium.webdriver.support.ui import Select

    browser.find_element(By.ID, "file").send_keys(str(federation.export))
    Select(browser.find_element(By.ID, "profile")).select_by_value("generic")
    browser.find_element(By.ID, "skip_invalid").click()
    _shot(browser, "import-form")
    _submit(browser, "form[action='/admin/import']")
    result = _wait_for(browser, "#result", timeout=60)
    assert "400 regels gelezen" in result.text and "2 afgewezen" in result.text
    rejects = browser.find_elements(By.CSS_SELECTOR, "#rejects tbody tr")
    assert len(rejects) == 2
    _shot(browser, "import-done")
    engine = make_engine(federation.node.database_url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Admission)) == 40 + 398
    finally:
        engine.dispose()


def _round(setup: Setup, round_id: str, wait: float = 0) -> RoundResult:
    response = httpx.get(
        f"{setup.agg_url}/v1/rounds/{round_id}",
        params={"wait": wait} if wait else None,
        headers={"authorization": f"Bearer {setup.analyst}"},
        timeout=70,
    )
    assert response.status_code == 200, response.text
    return RoundResult.model_validate(response.json())


def test_03_approve_a_waiting_query(federation: Setup, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    spec = report("standard").build(period=year_period(2025), rho=0.1, mode=Mode.INDEPENDENT)
    created = httpx.post(
        f"{federation.agg_url}/v1/rounds",
        json={"spec": spec.model_dump(mode="json"), "deadline_seconds": 120},
        headers={"authorization": f"Bearer {federation.analyst}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    round_id = created.json()["round_id"]
    query_id = created.json()["spec"]["query_id"]  # the aggregator gives each round its own
    browser.get(f"{federation.node_url}/admin/approvals")
    card = _wait_for(browser, f"#q-{query_id}", reload=True)
    assert "kost 10% van het budget van dit jaar" in card.text
    assert "analist" in card.text
    badge = browser.find_element(By.CSS_SELECTOR, ".menu .badge")
    assert badge.text == "1"
    # The aggregator shows the node as waiting for approval.
    deadline = time.monotonic() + 15
    while _round(federation, round_id).coverage.nodes[0].reason != "awaiting_approval":
        assert time.monotonic() < deadline, "coverage never showed awaiting_approval"
        time.sleep(0.3)
    _shot(browser, "approvals")
    card.find_element(By.CSS_SELECTOR, "button.approve").click()
    assert "Goedgekeurd" in _wait_for(browser, ".flash.ok").text
    deadline = time.monotonic() + 90
    result = _round(federation, round_id, wait=10)
    while result.state is not RoundState.CLOSED and time.monotonic() < deadline:
        result = _round(federation, round_id, wait=10)  # a long poll: returns on any change
    assert result.state is RoundState.CLOSED
    assert result.coverage.nodes[0].status is NodeStatus.ANSWERED
    publish = httpx.post(
        f"{federation.agg_url}/v1/releases",
        json={"recipe": demo_recipe(result)},
        headers={"authorization": f"Bearer {federation.admin_token}"},
        timeout=60,
    )
    assert publish.status_code == 201, publish.text


def test_04_erase_a_person(federation: Setup, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{federation.node_url}/admin/privacy-requests")
    browser.find_element(By.ID, "erase-id").send_keys(IDENTIFIER)
    browser.find_element(By.ID, "erase-checked").click()
    _submit(browser, "#erase-form")
    question = _wait_for(browser, "#erase-question")
    assert "Er zijn 1 bezoek(en)" in question.text
    _shot(browser, "erase-confirm")
    browser.find_element(By.CSS_SELECTOR, "button.danger").click()
    assert "Gewist: 1 bezoek(en)." in _wait_for(browser, ".flash.ok").text
    _shot(browser, "erased")
    assert IDENTIFIER not in browser.page_source


def test_05_read_the_audit_log(federation: Setup, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{federation.node_url}/admin/audit")
    status = browser.find_element(By.ID, "chain-status")
    assert "keten intact" in status.text
    text = _text(browser)
    for kind in (
        "Beantwoord",
        "Goedgekeurd",
        "Wacht op goedkeuring",
        "Geïmporteerd",
        "AVG-wissing",
    ):
        assert kind in text, kind
    answer = browser.find_element(By.CSS_SELECTOR, "li.kind-answer")
    answer.find_element(By.TAG_NAME, "summary").click()
    values = answer.find_elements(By.CSS_SELECTOR, "table.values tbody tr")
    assert len(values) > 0
    assert re.search(r"ρ = 0,1 ", answer.text)  # a Dutch decimal comma
    _shot(browser, "audit")
    assert IDENTIFIER not in browser.page_source


def test_06_compare_with_the_sector(federation: Setup, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{federation.node_url}/admin/benchmark")
    text = _text(browser)
    assert "demo-sector-2025-v1" in text
    tables = browser.find_elements(By.CSS_SELECTOR, "section.bench table")
    assert len(tables) == 4
    first = browser.find_elements(By.CSS_SELECTOR, "section.bench")[0]
    assert "Ons aandeel" in first.text
    _shot(browser, "benchmark")


PAGES = ["/admin/", "/admin/data", "/admin/import", "/admin/approvals", "/admin/audit",
         "/admin/policy", "/admin/privacy-requests", "/admin/benchmark"]  # fmt: skip


@pytest.mark.parametrize("path", PAGES)
def test_07_every_page_in_english_with_a_skip_link(
    federation: Setup, browser: Any, path: str
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{federation.node_url}/admin/lang/en?back={path}")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert len(browser.find_elements(By.TAG_NAME, "h1")) == 1
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    focused = browser.switch_to.active_element
    assert focused.get_attribute("class") == "skip"
    name = path.strip("/").replace("admin", "").strip("/") or "overview"
    _shot(browser, f"{name}-en")
    assert _console_errors(browser) == []
    browser.get(f"{federation.node_url}/admin/lang/nl?back={path}")


@pytest.mark.parametrize("width", [390, 1280])
def test_08_every_page_fits_a_phone_and_a_laptop(
    federation: Setup, browser: Any, width: int
) -> None:
    """No sideways scrolling of the page, no text under 11 px, and a table wider than the
    screen scrolls in its own box with a visible hint (the rules of the public site's test)."""
    browser.get(f"{federation.node_url}/admin/lang/nl?back=/admin/")
    found = {}
    for path in PAGES:
        name = path.strip("/").replace("admin", "").strip("/") or "overview"
        problems = layout_problems(browser, federation.node_url + path, width, f"admin-{name}-nl")
        if problems:
            found[path] = problems
    assert found == {}, found
