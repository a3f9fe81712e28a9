"""End to end: the real server (`leadml serve`, uvicorn, 127.0.0.1, a free port) on a scored
copy of the small database, opened in headless Debian Chromium driven by Playwright: what a
salesperson sees on /leads and on a lead's page. Then SIGHUP swaps the model.

Needs /usr/bin/chromium (`apt-get install -y chromium`); never downloads a browser.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AS_OF = pd.Timestamp("2026-06-30")
SHOTS = Path("/tmp")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (apt-get install -y chromium)"
    ),
]


@pytest.fixture(scope="module")
def site(small_db_url, small_config, lead_model, trained_bundle, tmp_path_factory):
    """The server running on a scored database copy; yields (base URL, process, scores, folder)."""
    import httpx

    from leadml.data.io import read_dataset, write_tables
    from leadml.predict import score_leads

    folder = tmp_path_factory.mktemp("serve-browser")
    db = folder / "leads.db"
    shutil.copy(small_db_url.removeprefix("sqlite:///"), db)
    url = f"sqlite:///{db}"
    leads, events = read_dataset(small_config.data, url=url)
    scores = score_leads(lead_model, leads[leads.status == "open"], events, AS_OF)
    write_tables(url, {"lead_scores": scores})
    current = folder / "current"
    current.symlink_to(Path(trained_bundle).resolve())
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "LEADML_API_KEY"}
    cmd = [
        sys.executable,
        "-m",
        "leadml",
        "serve",
        "--model",
        str(current),
        "--db",
        url,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200, proc, folder)
        yield base, proc, scores, folder
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready, proc, folder: Path, seconds: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {(folder / 'server.log').read_text()[-2000:]}")
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"server not ready in {seconds} s: {(folder / 'server.log').read_text()[-2000:]}")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def ranked(scores: pd.DataFrame) -> pd.DataFrame:
    return scores.sort_values(["score", "probability", "lead_id"], ascending=[False, False, True])


def test_ranked_list_as_a_person_sees_it(site, browser):
    base, _, scores, _ = site
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(f"{base}/leads")
    assert page.get_by_role("heading", level=1).inner_text() == "Ranked leads"
    rows = page.locator("table.leads tbody tr")
    assert rows.count() == min(50, len(scores))
    top = ranked(scores).iloc[0]
    first = rows.nth(0)
    assert first.locator("td.score").inner_text() == str(top.score)
    badge = first.locator(".badge")
    assert badge.is_visible() and badge.inner_text().lower() == top.grade
    reasons = json.loads(top.reasons)
    if reasons:  # the top reason is the one of its reasons that sets the lead apart on the page
        shown = first.locator("td.top-reason").inner_text()
        assert any(r["text"] in shown for r in reasons)
    headers = page.locator("table.leads thead th")
    assert all(headers.nth(i).get_attribute("scope") == "col" for i in range(headers.count()))
    assert page.get_by_label("Grade").is_visible() and page.get_by_label("Source").is_visible()
    page.screenshot(path=str(SHOTS / "leadml-serve-leads.png"))

    page.get_by_label("Grade").select_option("cold")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/leads?grade=cold*")
    badges = page.locator("table.leads tbody .badge").all_inner_texts()
    assert badges and {b.lower() for b in badges} == {"cold"}
    page.close()


def test_lead_page_shows_score_reasons_bars_and_timeline(site, browser):
    base, _, scores, _ = site
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(f"{base}/leads")
    top = ranked(scores).iloc[0]
    page.locator("table.leads tbody tr").nth(0).locator("th a").click()
    page.wait_for_url(f"**/leads/{top.lead_id}")
    assert page.locator(".big-score .num").inner_text() == str(top.score)
    assert page.locator(".summary .badge").inner_text().lower() == top.grade
    assert "such leads converted within 30 days" in page.locator(".summary").inner_text()
    reasons = json.loads(top.reasons)
    items = page.locator("ul.reasons li")
    assert items.count() == len(reasons) > 0
    track = page.locator(".track").first.bounding_box()
    centre = track["x"] + track["width"] / 2
    for i, reason in enumerate(reasons):
        item = items.nth(i)
        assert item.locator(".reason-text").inner_text() == reason["text"]
        sign = f"+{reason['points']}" if reason["points"] > 0 else str(reason["points"])
        assert item.locator(".pts").inner_text() == sign
        assert item.locator(".track").get_attribute("aria-label") == f"{sign} points"
        bar = item.locator(".bar").bounding_box()
        assert bar["width"] > 0
        if reason["points"] > 0:
            assert bar["x"] >= centre - 1  # grows right of the centre line
        else:
            assert bar["x"] + bar["width"] <= centre + 1  # grows left
    timeline = page.locator("table.timeline tbody tr")
    assert timeline.count() > 0
    assert page.get_by_role("heading", name="Recent engagement").is_visible()
    page.screenshot(path=str(SHOTS / "leadml-serve-lead.png"), full_page=True)
    page.close()


def test_sighup_swaps_the_model(site, lead_model, tmp_path):
    import httpx

    from leadml.bundle import save_bundle

    base, proc, _, folder = site
    second = copy.copy(lead_model)
    second.version = "sighup-version"
    save_bundle(second, folder / "second")
    current = folder / "current"
    current.unlink()
    current.symlink_to(folder / "second")
    proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: httpx.get(f"{base}/readyz").json()["model_version"] == "sighup-version",
        proc,
        folder,
        60,
    )
    body = {"lead": {"lead_id": 1, "created_at": "2026-06-01T00:00:00"}}
    assert httpx.post(f"{base}/v1/score", json=body).json()["model_version"] == "sighup-version"
    assert proc.poll() is None  # the signal reloaded, it did not stop the server
