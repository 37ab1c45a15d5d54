"""The public site in real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium) against a real ``publieksdata aggregator serve`` process.

For the index and a release page in Dutch and English: the charts and tables are there, every
number in every table equals the signed release JSON, the keyboard reaches the skip link first,
and the browser logs no console errors. Screenshots are kept in ``build/test-artifacts/`` (or
``$PUBLIEKSDATA_ARTIFACTS``). Without Chromium the tests skip, unless
PUBLIEKSDATA_REQUIRE_BROWSER=1 (set by .ci/run), in which case they fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aggregator.releases.chain import SealedRelease, parse
from publieksdata.processes import Service, free_port, start
from tests.aggregator.test_public_site import from_page, publish_two
from tests.fedkit import make_aggregator
from tests.optional import BROWSER, need

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(
    os.environ.get("PUBLIEKSDATA_ARTIFACTS", Path(__file__).parents[2] / "build" / "test-artifacts")
)


def _browser() -> Any:
    missing = [p for p in (CHROMIUM, DRIVER) if not Path(p).exists()]
    if missing:
        need(BROWSER, f"it is not installed ({', '.join(missing)} missing)")
    need(BROWSER, None)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--disable-extensions", "--no-first-run"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=DriverService(executable_path=DRIVER), options=options)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[SealedRelease]]]:
    root = tmp_path_factory.mktemp("site")
    settings = make_aggregator(root / "aggregator", None)
    releases = asyncio.run(publish_two(settings, more=True))  # line, bars and small multiples
    port = free_port()
    service: Service = start(
        "aggregator",
        ["aggregator", "serve", "--home", str(settings.home), "--port", str(port)],
        port,
        root / "aggregator.log",
        {"PUBLIEKSDATA_LOG_LEVEL": "warning"},
    )
    try:
        service.wait_healthy(60)
        yield service.url, releases
    finally:
        service.stop()


def _shot(driver: Any, name: str, width: int = 1280, tallest: int = 12_000) -> None:
    """A full-page screenshot at ``width`` (1366: a laptop screen), kept as a test artefact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(width, min(int(height) + 100, tallest))
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    driver.set_window_size(width, 900)


def _console_errors(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_the_index_in_a_real_browser(site: Any, browser: Any, lang: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, releases = site
    browser.get(f"{url}/{lang}/")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == lang
    assert len(browser.find_elements(By.TAG_NAME, "h1")) == 1
    links = {a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "ul a")}
    for release in releases:
        assert f"{url}/{lang}/releases/{release.slug}" in links
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    focused = browser.switch_to.active_element
    assert "skip" in (focused.get_attribute("class") or "")  # the first stop: skip to content
    _shot(browser, f"index-{lang}")
    assert _console_errors(browser) == []


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_a_release_page_in_a_real_browser(site: Any, browser: Any, lang: str) -> None:
    from selenium.webdriver.common.by import By

    url, releases = site
    release = releases[1]
    _, signed = parse(httpx.get(f"{url}/releases/{release.slug}.json", timeout=10).content)
    browser.get(f"{url}/{lang}/releases/{release.slug}")
    assert browser.title.startswith(signed.title.get(lang))
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart[role=img]")
    assert len(charts) == 2 * len(signed.tables)  # each drawn for a laptop and for a phone
    charts = [chart for chart in charts if chart.is_displayed()]
    assert len(charts) == len(signed.tables) and all(
        "chart-wide" in c.get_attribute("class") for c in charts
    )
    for chart in charts:
        assert chart.size["width"] > 300 and chart.size["height"] > 50  # drawn, not empty
        assert chart.find_element(By.TAG_NAME, "title").get_attribute("textContent")
    for table in signed.tables:
        element = browser.find_element(By.CSS_SELECTOR, f'table[data-table="{table.table_id}"]')
        assert element.is_displayed()
        rows = element.find_elements(By.CSS_SELECTOR, "tr[data-codes]")
        expected = [*table.cells, *([table.total] if table.total else [])]
        assert len(rows) == len(expected)
        for row, cell in zip(rows, expected, strict=True):
            assert cell is not None
            shown = row.find_element(By.CSS_SELECTOR, "td.value").text
            assert from_page(shown, lang) == cell.value, (table.table_id, cell.codes, shown)
    switch = browser.find_element(By.CSS_SELECTOR, "header nav a")
    other = "en" if lang == "nl" else "nl"
    assert switch.get_attribute("href") == f"{url}/{other}/releases/{release.slug}"
    _shot(browser, f"release-{lang}")
    assert _console_errors(browser) == []
    switch.click()
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == other
    assert _console_errors(browser) == []


def test_verify_release_checks_the_running_site(site: Any) -> None:
    from typer.testing import CliRunner

    from publieksdata.cli import app

    url, releases = site
    runner = CliRunner()
    result = runner.invoke(app, ["verify-release", f"{url}/nl/releases/{releases[1].slug}"])
    assert result.exit_code == 0, result.output
    assert "fingerprint" in result.output and "2 release(s) checked" in result.output
    first = runner.invoke(app, ["verify-release", f"{url}/releases/{releases[0].slug}.json"])
    assert first.exit_code == 0 and "1 release(s) checked" in first.output
    wrong_key = "A" * 43
    pinned = runner.invoke(
        app, ["verify-release", f"{url}/nl/releases/{releases[1].slug}", "--key", wrong_key]
    )
    assert pinned.exit_code == 1
    missing = runner.invoke(app, ["verify-release", f"{url}/nl/releases/nothing-v1"])
    assert missing.exit_code == 1 and "lists no release" in missing.output


# What a reader on a phone (390 px, an iPhone 12-15) and on a laptop (1280 px) must get: no
# sideways scrolling of the page, no text smaller than 11 px (SVG chart text as drawn, after the
# chart is scaled), every chart's labels and bars inside the chart and the chart inside the
# screen, and every table either fitting or in its own scroll box with a visible hint.
LAYOUT_CHECK = """
const problems = [];
const width = arguments[0];  // the screen's; a phone widens its window for a page too wide
const root = document.documentElement;
if (root.scrollWidth > width || window.innerWidth > width) {
  problems.push(`page is ${root.scrollWidth} px wide (window ${window.innerWidth}) in ${width}`);
}
const shown = (el) =>
  el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const text = walker.currentNode.textContent.trim();
  const el = walker.currentNode.parentElement;
  if (!text || !el || el.closest("title, desc, script, style, .skip") || !shown(el)) continue;
  let size = parseFloat(getComputedStyle(el).fontSize);
  if (el instanceof SVGElement) {
    const m = el.getScreenCTM();
    size *= Math.hypot(m.a, m.b);
  }
  if (size < 10.95) problems.push(`text "${text.slice(0, 30)}" at ${size.toFixed(1)} px`);
}
for (const svg of document.querySelectorAll("svg.chart")) {
  if (!shown(svg)) continue;
  const box = svg.getBoundingClientRect();
  if (box.left < -0.5 || box.right > width + 0.5) problems.push(`${svg.id} is off the screen`);
  for (const part of svg.querySelectorAll("text, rect, path, circle")) {
    const b = part.getBoundingClientRect();
    if (b.left < box.left - 0.5 || b.right > box.right + 0.5) {
      problems.push(`${svg.id}: "${part.textContent.slice(0, 20)}" ${part.tagName} cut off`);
    }
  }
}
for (const table of document.querySelectorAll("table")) {
  if (!shown(table)) continue;
  const holder = table.parentElement;
  if (table.getBoundingClientRect().width <= holder.clientWidth + 0.5) continue;
  const scrolls = ["auto", "scroll"].includes(getComputedStyle(holder).overflowX);
  const hint = holder.parentElement.querySelector(`[data-hint-for="${holder.id}"]`);
  if (!scrolls || !holder.id || !hint || !shown(hint) || !hint.textContent.trim()) {
    const name = table.dataset.table || table.id;
    problems.push(`table ${name} is wider than its box, without a visible scroll hint`);
  }
}
return problems;
"""


def view_at(driver: Any, width: int) -> None:
    """The page laid out as on a screen ``width`` CSS pixels wide (a phone: touch, 3x pixels)."""
    phone = width < 600
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 844 if phone else 900, "mobile": phone,
         "deviceScaleFactor": 1},
    )  # fmt: skip


def layout_problems(driver: Any, url: str, width: int, shot_name: str) -> list[str]:
    """Open ``url`` at ``width``; what breaks the rules above (and a full-page screenshot)."""
    view_at(driver, width)
    try:
        driver.get(url)
        problems: list[str] = driver.execute_script(LAYOUT_CHECK, width)
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": min(height, 12_000), "mobile": width < 600,
             "deviceScaleFactor": 1},
        )  # fmt: skip
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / f"{shot_name}-{width}.png"))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return problems


@pytest.mark.parametrize("width", [390, 1280])
@pytest.mark.parametrize("lang", ["nl", "en"])
def test_pages_fit_a_phone_and_a_laptop(site: Any, browser: Any, lang: str, width: int) -> None:
    url, releases = site
    pages = {
        "index": f"/{lang}/",
        "release": f"/{lang}/releases/{releases[1].slug}",
        "privacy": f"/{lang}/privacy",
    }
    found = {
        name: problems
        for name, path in pages.items()
        if (problems := layout_problems(browser, url + path, width, f"site-{name}-{lang}"))
    }
    assert found == {}, json.dumps(found, indent=0, ensure_ascii=False)
