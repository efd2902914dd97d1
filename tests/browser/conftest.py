"""The dashboard in a real browser: Debian's chromium driven by Playwright, against an embedded `taas serve`.

No browser is downloaded: without /usr/bin/chromium (or the playwright package) the tests skip, unless CI is set,
where they fail instead."""

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.procs import embedded_serve

CHROMIUM = os.environ.get("TAAS_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu",
        "--no-first-run", "--disable-sync"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the browser tests must run)")
    pytest.skip(reason)


@dataclass(frozen=True)
class Served:
    url: str
    key: str
    data: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One embedded `taas serve` (SQLite, filesystem broker, one worker) for the module, as a user runs it."""
    with embedded_serve(tmp_path_factory.mktemp("serve")) as (url, data, _):
        yield Served(url=url, key=(data / "dev-key").read_text().strip(), data=data)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _unavailable(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS,
                              downloads_path=str(tmp_path_factory.mktemp("downloads")))
        yield b
        b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.failed_call = report.failed  # read by the page fixture: a screenshot of a failure


@pytest.fixture
def page(browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:  # noqa: ANN001
    """A fresh browser context (own sessionStorage) at 1400x1000; errors in the page's scripts are collected in
    page.js_errors; on failure a full-page screenshot goes to tmp_path."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    pg.js_errors = []
    pg.on("pageerror", lambda exc: pg.js_errors.append(str(exc)))
    try:
        yield pg
    finally:
        if getattr(request.node, "failed_call", False):
            shot = tmp_path / "failure.png"
            pg.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the failure: {shot}")
        context.close()
