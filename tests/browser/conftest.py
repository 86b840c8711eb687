"""Fixtures for the browser tests: Debian's chromium through Playwright, our own JupyterLab.

Every test ends with a screenshot in test-artifacts/browser/<test>.png (git-ignored); when a test
fails, the path is printed with the failure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from browserkit import CHROMIUM, CHROMIUM_ARGS, ROOT, Server, start_lab
from playwright.sync_api import Page, Playwright, sync_playwright

ARTIFACTS = ROOT / "test-artifacts" / "browser"
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    """Keep each phase's report on the test, so the page fixture knows whether it failed."""
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver; the browser itself is Debian's chromium, never a downloaded build."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium. "
            "Run `make browser-deps` (apt-get install chromium), or `make test`, which does it.",
            pytrace=False,
        )
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One JupyterLab for the notebook tests, on a temporary copy of notebooks/."""
    server = start_lab(tmp_path_factory.mktemp("jupyterlab"), ROOT / "notebooks")
    yield server
    survivors = server.stop()
    assert not survivors, f"processes outlived JupyterLab: {survivors}"


@pytest.fixture
def lab(jupyterlab: Server) -> Iterator[Server]:
    """The JupyterLab, with no kernel left running after the test (they share two cores)."""
    yield jupyterlab
    jupyterlab.shut_down_kernels()


@pytest.fixture
def page(playwright: Playwright, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A new page in a new chromium with a fresh profile; a screenshot of it at the end."""
    context = playwright.chromium.launch_persistent_context(
        tmp_path / "chromium-profile",
        executable_path=str(CHROMIUM),
        args=CHROMIUM_ARGS,
        headless=True,
        viewport={"width": 1400, "height": 1000},
    )
    context.set_default_timeout(30_000)
    page = context.pages[0] if context.pages else context.new_page()
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', request.node.name)}.png"
    try:
        page.screenshot(path=shot)
    finally:
        context.close()
    call = request.node.stash.get(REPORTS, {}).get("call")
    if call is not None and call.failed:
        print(f"screenshot of the page when the test failed: {shot}")
