"""End to end in headless Debian Chromium: the real server on a database scored by three batch
runs; the lead page shows the score chart, the change ledger and the fit / engagement
sub-scores, the call-list page its summary and plot. Screenshots go to $LEADML_SCREENSHOTS
(docs/ holds the ones in the README) or the test's folder.

Needs /usr/bin/chromium (`apt-get install -y chromium`); never downloads a browser.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_serve_browser import ARGS, CHROMIUM, free_port, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing"),
]


@pytest.fixture(scope="module")
def site(history_db, trained_bundle, tmp_path_factory):
    """`leadml serve` on the three-run database; yields (base URL, screenshot folder)."""
    import httpx

    folder = tmp_path_factory.mktemp("pages-browser")
    env = {k: v for k, v in os.environ.items() if k != "LEADML_API_KEY"}
    port = free_port()
    cmd = [sys.executable, "-m", "leadml", "serve", "--model", str(trained_bundle)]
    cmd += ["--db", history_db, "--host", "127.0.0.1", "--port", str(port)]
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200, proc, folder)
        yield base, Path(os.environ.get("LEADML_SCREENSHOTS") or folder)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def three_scorings_mover(url: str) -> int:
    """The lead scored by all three runs whose score moved most in the last one."""
    import sqlite3

    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        rows = conn.execute(
            "SELECT lead_id, score FROM lead_score_history ORDER BY lead_id, scored_at"
        ).fetchall()
    scores: dict[int, list[int]] = {}
    for lead_id, score in rows:
        scores.setdefault(lead_id, []).append(score)
    three = {k: v for k, v in scores.items() if len(v) == 3}
    return max(three, key=lambda k: (abs(three[k][2] - three[k][1]), -k))


def test_lead_page_chart_ledger_and_subscores(site, browser, history_db):
    base, shots = site
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base}/leads?sort=movers")
    page.locator("table.leads tbody tr").nth(0).locator("th a").click()
    page.wait_for_url(re.compile(r".*/leads/\d+$"))
    assert page.locator("svg.score-chart circle.score-point").count() >= 2
    page.goto(f"{base}/leads/{three_scorings_mover(history_db)}")
    chart = page.locator("svg.score-chart")
    assert chart.is_visible() and page.locator("svg.score-chart circle.score-point").count() == 3
    assert page.locator("svg.score-chart rect.band").count() == 3
    steps = page.locator("table.ledger-table tbody tr")
    assert steps.count() >= 4
    step_points = [int(t) for t in page.locator("table.ledger-table td.num").all_inner_texts()]
    change = page.locator(".ledger > p b.pts").inner_text()
    assert sum(step_points) == int(change) != 0  # the causes add up to the change, exactly
    score = int(page.locator(".big-score .num").inner_text())
    baseline = int(page.locator(".equation .baseline").inner_text())
    fit = int(page.locator("#fit-score").inner_text())
    engagement = int(page.locator("#engagement-score").inner_text())
    assert baseline + fit + engagement == score
    assert page.get_by_role("heading", name="Fit and engagement").is_visible()
    assert page.locator(".trend").inner_text() in ("rising", "steady", "falling")
    page.screenshot(path=str(shots / "lead-page.png"), full_page=True)
    page.close()


def test_calllist_page_summary_and_plot(site, browser):
    base, shots = site
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(f"{base}/calllist")
    page.get_by_label("Calls the team can make").fill("150")
    page.get_by_role("button", name="Make the list").click()
    page.wait_for_url("**/calllist?capacity=150*")
    assert (
        "conversions expected from the top 150 open leads" in page.locator(".expected").inner_text()
    )
    assert page.locator("svg.calllist-chart polygon.interval-band").is_visible()
    assert page.locator("table.calllist tbody tr").count() == 100  # the CSV has all 150
    low, high = page.locator(".interval").inner_text().split("\u2013")
    assert int(low) <= int(high)
    assert page.get_by_role("link", name="Download as CSV").is_visible()
    page.screenshot(path=str(shots / "calllist-page.png"))
    page.close()
