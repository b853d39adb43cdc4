"""report.html in a real browser: Debian's chromium, headless, driven by Selenium through
chromedriver (explicit paths: Selenium Manager never downloads anything). Pages: a tiny store
written here, and (slow) the session's real `fl-sim run` (conftest.flower_run)."""

from __future__ import annotations

import importlib.util
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tiny_store import make_run

from fl_sim.results.html_report import REPORT_HTML, write_html_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def require_browser() -> None:
    """Skip without chromium, chromedriver or selenium; under CI (env CI set, e.g. CI=true)
    fail instead."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if importlib.util.find_spec("selenium") is None:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if missing:
        reason = (
            f"the headless browser test needs {', '.join(missing)} "
            "(Debian: apt-get install chromium chromium-driver)"
        )
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{reason}; CI must run it (.ci/run installs them)", pytrace=False)
        pytest.skip(reason)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (by parent pid, from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        found.update(kids)
        todo.extend(kids)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless chromium at 1280x2000 with its console log; quit in any case, and no chromium
    or chromedriver process may outlive the test."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager, if ever asked: no network
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--window-size=1280,2000",
    ):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    pids: set[int] = set()
    try:
        pids = {driver.service.process.pid} | descendants(driver.service.process.pid)
        yield driver
    finally:
        driver.quit()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if alive(p)], "chromium/chromedriver outlived the test"


@pytest.fixture(params=["tiny-store", pytest.param("flower-run", marks=pytest.mark.slow)])
def report(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A report.html of 2 arms x 2 rounds: written here from a tiny store, or the one the
    session's real `fl-sim run` wrote."""
    if request.param == "flower-run":
        run = request.getfixturevalue("flower_run")
        assert run.returncode == 0, run.log[-4000:]
        return run.out / REPORT_HTML
    out = make_run(tmp_path / "tiny")
    return write_html_report([out], out / REPORT_HTML)


def column(driver: Any, table: str, index: int) -> list[str]:
    cells = driver.find_elements("css selector", f"#{table} tbody tr td:nth-child({index + 1})")
    return [c.text for c in cells]


def test_report_renders_in_headless_chromium(report: Path, browser: Any, tmp_path: Path) -> None:
    browser.get(report.as_uri())
    assert browser.title == f"fl-sim report: {report.parent.name}"
    run = browser.find_element("css selector", "section.run")
    arms = run.get_attribute("data-arms").split(",")
    assert arms == ["ann", "snn"] and run.get_attribute("data-rounds") == "2"
    assert run.get_attribute("data-status") == "finished"
    table = "run-0-per-round"
    shown = set(zip(column(browser, table, 0), column(browser, table, 2), strict=True))
    assert shown == {(arm, str(r)) for arm in arms for r in (1, 2)}
    # every image decoded (inline base64 grids), the inline SVG curves laid out
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth]);"
    )
    assert len(images) == 4 and all(done and width > 0 for done, width in images)
    svg = browser.find_element("css selector", "#run-0-curves svg")
    assert svg.size["width"] > 600 and svg.size["height"] > 100
    assert len(browser.find_elements("css selector", "#run-0-curves svg path")) > 20
    # fits 1280 px: no sideways scrolling
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth;"
    )
    # clicking a header sorts the rows by that column, again reverses them
    before = column(browser, table, 2)
    assert before != sorted(before)  # arm-major: rounds 1, 2, 1, 2, ...
    headers = browser.find_elements("css selector", f"#{table} th")
    (header,) = [h for h in headers if h.text == "round"]
    header.click()
    assert column(browser, table, 2) == sorted(before)
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert column(browser, table, 2) == sorted(before, reverse=True)
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 1000 and height >= 1000
