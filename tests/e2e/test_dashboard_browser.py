"""The dashboard in a real browser: headless Chromium (Debian's package, driven by playwright) opens the page
``streamkeeper dashboard`` wrote from a week of history, with every request that is not to a file or to
127.0.0.1 blocked. Every chart must be drawn with its data points, the page must log no console error and
ask for nothing outside, and an empty store's page must open cleanly too. The screenshot is saved under
``.test-artifacts/dashboard/``; with ``STREAMKEEPER_DOCS_SCREENSHOT=1`` also as ``docs/dashboard.png``
(the README's)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2ekit import ROOT

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dashkit import seed  # noqa: E402

from streamkeeper.store import HistoryStore  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ROOT / ".test-artifacts" / "dashboard"
CHARTS = ["expiries", "events", "lag", "drift", "tokens", "errors"]

# For each chart section: the points its traces carry (plotly's data, typed arrays decoded) and the points drawn (SVG elements
# of markers and bars), or why not.
DRAWN = """
() => [...document.querySelectorAll('section[data-chart]')].map(section => {
    const plot = section.querySelector('.js-plotly-plot');
    if (!plot || !plot._fullLayout) return {chart: section.dataset.chart, carried: 0, drawn: 0};
    const carried = plot._fullData.reduce((n, t) => n + (t.x ? t.x.length : 0), 0);
    const drawn = plot.querySelectorAll('.scatterlayer .point, .barlayer .point').length;
    return {chart: section.dataset.chart, expected: Number(section.dataset.points), carried, drawn};
})
"""


class Browser:
    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.blocked: list[str] = []
        self.errors: list[str] = []

    def open(self, page_file: Path) -> Any:
        context = self.browser.new_context(viewport={"width": 1280, "height": 900})

        def local_only(route: Any) -> None:
            url = route.request.url
            if url.startswith(("file://", "http://127.0.0.1", "https://127.0.0.1", "data:", "blob:")):
                route.continue_()
            else:
                self.blocked.append(url)
                route.abort()

        context.route("**/*", local_only)
        page = context.new_page()
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.goto(page_file.as_uri(), wait_until="load")
        return page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install -y chromium (.ci/run does)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield Browser(launched)
        launched.close()


def write_page(db: Path, out: Path) -> str:
    """`streamkeeper dashboard` as a user runs it (its own process)."""
    result = subprocess.run(
        [sys.executable, "-m", "streamkeeper.cli", "dashboard", "--out", str(out), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_every_chart_is_drawn_with_its_data_offline(browser: Browser, tmp_path: Path) -> None:
    db = tmp_path / "history.duckdb"
    seed(HistoryStore(db))
    out = tmp_path / "dashboard.html"
    assert write_page(db, out).endswith("(6 of 6 charts with data)")

    page = browser.open(out)
    page.wait_for_function(
        "() => [...document.querySelectorAll('section[data-chart]')]"
        ".every(s => { const p = s.querySelector('.js-plotly-plot'); return p && p._fullLayout; })",
        timeout=60_000,
    )
    charts = page.evaluate(DRAWN)
    assert [c["chart"] for c in charts] == CHARTS
    for chart in charts:
        assert chart["carried"] == chart["expected"] > 0, chart
        assert chart["drawn"] > 0, chart
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000  # a drawn page, not a blank one
    if os.environ.get("STREAMKEEPER_DOCS_SCREENSHOT"):
        shutil.copyfile(shot, ROOT / "docs" / "dashboard.png")
    print(f"screenshot: {shot}")
    page.context.close()
    assert browser.errors == [], browser.errors
    assert browser.blocked == [], browser.blocked  # the page asked for nothing outside


def test_an_empty_stores_page_opens_cleanly_and_says_there_is_no_data(
    browser: Browser, tmp_path: Path
) -> None:
    db = tmp_path / "empty.duckdb"
    HistoryStore(db).query("SELECT 1")
    out = tmp_path / "empty.html"
    assert write_page(db, out).endswith("(0 of 6 charts with data)")
    page = browser.open(out)
    assert page.locator("p.empty").count() == 7  # the page's note and one per chart
    assert page.locator(".js-plotly-plot").count() == 0
    page.context.close()
    assert browser.errors == [] and browser.blocked == [], (browser.errors, browser.blocked)
