"""Browser fixtures: Debian's Chromium driven by Playwright against pytest-django's live server."""

import os
import shutil
from contextlib import contextmanager

import pytest

# Playwright's sync API runs an event loop in this thread; Django's ORM would refuse to run beside it.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session (fails clearly when it is not installed)."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is not installed: run scripts/setup.sh (it installs Debian's chromium package)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextmanager
def fresh_page(browser):
    """A page in a browser context of its own; console errors are collected on `page.console_errors`."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(msg.text))
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def page(browser):
    """A fresh browser context and page."""
    with fresh_page(browser) as page:
        yield page


@pytest.fixture
def second_page(browser):
    """A second, separate browser context (another person at another computer)."""
    with fresh_page(browser) as page:
        yield page


def pytest_collection_modifyitems(items):
    """Every browser test is slow: `pytest -m "not slow"` leaves them all out."""
    for item in items:
        if item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.slow)
