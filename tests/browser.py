"""A real browser for the page tests: Debian's chromium driven by Playwright, against the live server.

Outside CI a missing chromium skips these tests; in CI (the CI environment variable set) it fails them.
tests/conftest.py loads this module as a plugin, so its fixtures (`browser`, `page`) serve every test module;
they import `log_in` and `PASSWORD`.

The tests save what a person sees with `screenshot(page, name)`: PNGs in SCREENSHOT_DIR (default var/screenshots/,
git-ignored), which `.ci/run` leaves in place and names at its end, for CI to keep as artifacts.
"""

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import User

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "a-long-test-password-4711"
TIMEOUT_MS = 10_000


def screenshot_dir() -> Path:
    from django.conf import settings

    directory = Path(os.environ.get("SCREENSHOT_DIR") or Path(settings.BASE_DIR) / "var" / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def screenshot(page, name: str, *, full_page: bool = False) -> Path:
    """Saves the page as `name`.png in screenshot_dir(); `full_page` takes the whole page, else the screen."""
    path = screenshot_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        message = f"chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; the tests' own ORM calls are
    # still synchronous, so Django's guard against ORM calls from async code does not apply.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True, base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    yield tab
    context.close()


def log_in(page, user: User, next_url: str = "/") -> None:
    """Through the admin's login page, as a person would."""
    page.goto(next_url)
    assert "/admin/login/" in page.url
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(lambda url: "/admin/login/" not in url)
    assert page.url == page.context.pages[0].url and page.url.endswith(next_url)
