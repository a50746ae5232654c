"""In a real browser (Debian's chromium driven by Playwright, launched as tests/test_browser_dashboard.py
does): the admin logs in on the login form with the password the deployment printed, opens the ops pages
and the interactive API docs; no page answers an error, no script fails, no file fails to load, and
nothing is fetched from another origin (no CDN). Outside CI a missing chromium skips; in CI it fails.

The browser is module-scoped: Playwright's sync API keeps an event loop running in this thread, which
would make Django refuse ORM calls in the tests that run after this module.
"""

import os

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import _required_in_ci

PAGES = {"/": "Overview", "/fallbacks/": "Fallback", "/what-if/": "What-if"}
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        _required_in_ci(f"chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, deployment):
    context = browser.new_context(base_url=deployment.base_url)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    tab.problems = []
    tab.on("pageerror", lambda error: tab.problems.append(f"script error: {error}"))
    tab.on("requestfailed", lambda request: tab.problems.append(f"failed to load {request.url}: {request.failure}"))
    tab.on("response", lambda response: response.status >= 400 and tab.problems.append(f"{response.status} {response.url}"))
    tab.on("request", lambda request: request.url.startswith((deployment.base_url, "data:", "blob:"))
           or tab.problems.append(f"fetched from another origin: {request.url}"))
    yield tab
    context.close()


def test_the_admin_logs_in_and_sees_the_ops_pages_and_the_api_docs(deployment, page):
    page.goto("/")
    assert "/admin/login/" in page.url
    page.fill("#id_username", deployment.admin_user)
    page.fill("#id_password", deployment.admin_password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{deployment.base_url}/")

    for path, heading in PAGES.items():
        response = page.goto(path)
        assert response.status == 200, path
        assert heading.lower() in page.locator("h1").first.inner_text().lower(), (path, page.locator("h1").first.inner_text())
    page.goto("/api/docs/")
    page.wait_for_selector(".opblock")  # Swagger UI rendered the operations from /api/schema/
    assert page.locator(".opblock").count() >= 7

    assert page.problems == []
