"""An incident as the person on call sees it, in a real browser at 1400x1000 and on a 390 px phone.

The example policy with a day of traffic (tests.test_browser_dashboard.demo_data), then the incident: OpenAI's
daily tokens past the soft limit, 429s with a retry-after reported on two models, and a provider without
credentials. Each test keeps what the person sees as screenshots (tests.browser.screenshot: SCREENSHOT_DIR, by default
var/screenshots/, which CI keeps as artifacts); the README's picture, docs/overview.png, is overview-1400.png.
"""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone
from rest_framework.test import APIClient

from providers.models import LLMModel
from router.models import Decision, UsageEvent
from tests.browser import PASSWORD, log_in, screenshot
from tests.calls import report
from tests.factories import make_api_key
from tests.test_browser_dashboard import demo_data, quota

DESKTOP = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(autouse=True)
def incident_settings(settings, monkeypatch):
    """Database counters, a fast password hasher; OpenAI and Anthropic have keys, Zhipu has none."""
    settings.REDIS_URL = ""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.delenv("ZHIPU_API_KEY", raising=False)


@pytest.fixture
def viewer() -> User:
    user = User.objects.create_user("on-call", password=PASSWORD, is_staff=True)
    group, _ = Group.objects.get_or_create(name="policy viewers")
    group.permissions.add(Permission.objects.get(content_type__app_label="router", codename="view_decision"))
    user.groups.add(group)
    return user


@pytest.fixture
def incident() -> dict:
    demo_data()
    # OpenAI's daily tokens: 2.4M from the demo's day plus 1.9M in the last quarter hour, 86% of 5M (soft limit 80%).
    UsageEvent.objects.create(created_at=timezone.now() - timedelta(minutes=15), model_key="gpt-4o", provider_slug="openai",
                              input_tokens=1_300_000, output_tokens=600_000, caller="agents-service")
    billing, agents = APIClient(), APIClient()
    billing.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key('billing')}")
    agents.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key('agents-service')}")
    report(billing, model="gpt-4o-mini", status="rate_limited", retry_after=600, input_tokens=0, output_tokens=0)
    report(agents, model="claude-3-5-haiku", status="rate_limited", retry_after=300, input_tokens=0, output_tokens=0)
    return {"openai_day": quota("openai", "tokens-day")}


def open_page(browser, live_server, viewport: dict):
    context = browser.new_context(viewport=viewport, base_url=live_server.url)
    context.set_default_timeout(10_000)
    return context, context.new_page()


def in_first_screen(locator, height: int) -> bool:
    box = locator.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


def horizontal_overflow(page) -> int:
    return page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")


def test_the_first_screen_names_the_quota_and_the_models_and_links_to_them(browser, live_server, viewer, incident):
    from playwright.sync_api import expect

    context, page = open_page(browser, live_server, DESKTOP)
    log_in(page, viewer, "/")

    openai_day = page.locator('#now-quotas [data-quota="openai/tokens-day"]')
    expect(openai_day).to_contain_text("86%")
    expect(openai_day).to_contain_text("frees in")
    cooled = page.locator('#now-models [data-model="gpt-4o-mini"]')
    expect(cooled).to_contain_text("cooling down")
    expect(cooled).to_contain_text("reported by key billing")
    expect(page.locator('#now-models [data-model="claude-opus-4-5"]')).to_contain_text("unavailable")
    expect(page.locator("#now-reasons .reasons tr").first).to_be_visible()
    for item in (openai_day, cooled, page.locator("#now-reasons .reasons tr").first):
        assert in_first_screen(item, DESKTOP["height"])
    expect(page.locator("p.not-configured")).to_contain_text("zhipu")
    expect(page.locator("#provider-zhipu .check-error")).to_have_count(0)  # no red "no API key" box
    screenshot(page, "overview-1400")

    openai_day.locator("a.now-name").click()
    page.wait_for_url(f"**/quotas/{incident['openai_day'].id}/")
    expect(page.locator("h1")).to_have_text("Quota openai/tokens-day")
    expect(page.locator(".quota-chart .limit-hard")).to_have_count(1)
    expect(page.locator(".quota-chart .limit-soft")).to_have_count(1)
    expect(page.locator("#quota-tuning")).to_contain_text("Refusals it caused")
    expect(page.locator("#quota-tuning-period")).to_contain_text("(the last whole minute)")
    screenshot(page, "quota-1400", full_page=True)
    page.get_by_role("link", name="Last 7 days").click()  # the tuning follows the range
    page.wait_for_url("**range=7d**")
    expect(page.locator("#quota-tuning-title")).to_contain_text("last 7 days")
    page.click("#edit-quota")
    page.wait_for_url(f"**/admin/providers/quota/{incident['openai_day'].id}/change/")

    page.goto("/")
    page.locator('#now-models [data-model="gpt-4o-mini"] .now-links a', has_text="history").click()
    page.wait_for_url("**/fallbacks/?model=gpt-4o-mini&reason=cooldown")
    expect(page.locator("#id_model")).to_have_value("gpt-4o-mini")
    context.close()


def test_trace_rows_link_to_the_quota_and_the_model(browser, live_server, viewer, incident):
    from playwright.sync_api import expect

    context, page = open_page(browser, live_server, DESKTOP)
    log_in(page, viewer, "/fallbacks/?outcome=failed_fast")
    first = page.locator("#fallback-history tbody.decision").first
    first.locator("summary").click()
    first.locator(".trace a.quota-link").first.click()
    page.wait_for_url(f"**/quotas/{incident['openai_day'].id}/")

    page.goto("/fallbacks/?outcome=failed_fast")
    first = page.locator("#fallback-history tbody.decision").first
    first.locator("summary").click()
    expect(first.locator(".retry-after-sources")).to_contain_text("Retry-After")
    first.locator(".trace tbody tr").first.locator("a").first.click()  # the primary, gpt-4-turbo
    page.wait_for_url(f"**/admin/providers/llmmodel/{LLMModel.objects.get(key='gpt-4-turbo').pk}/change/")
    context.close()


def test_on_a_phone_nothing_scrolls_sideways_and_rows_show_outcome_and_reason_first(browser, live_server, viewer, incident):
    from playwright.sync_api import expect

    context, page = open_page(browser, live_server, PHONE)
    log_in(page, viewer, "/")
    expect(page.locator('#now-quotas [data-quota="openai/tokens-day"]')).to_be_visible()
    assert horizontal_overflow(page) <= 0
    screenshot(page, "overview-390", full_page=True)

    page.goto("/fallbacks/")
    assert horizontal_overflow(page) <= 0
    row = page.locator("#fallback-history .decision-row").first
    outcome, reason, when = (row.locator(cell).bounding_box() for cell in (".cell-outcome", ".cell-reason", ".cell-when"))
    assert outcome["y"] < reason["y"] < when["y"]
    assert row.locator(".cell-outcome").bounding_box()["width"] > 300  # a card, not a squeezed column
    screenshot(page, "fallbacks-390")

    for path in (f"/quotas/{incident['openai_day'].id}/", "/tuning/", "/policy/history/"):
        page.goto(path)
        assert horizontal_overflow(page) <= 0, path

    page.goto("/what-if/")
    page.select_option("#id_category", "security_auth_change")
    page.click("#what-if-form button[type=submit]")
    result, form = page.locator("#what-if-decision"), page.locator("#what-if-form")
    expect(result).to_be_visible()
    assert result.bounding_box()["y"] < form.bounding_box()["y"]
    assert in_first_screen(page.locator("#chosen-model"), PHONE["height"])
    assert horizontal_overflow(page) <= 0
    screenshot(page, "what-if-390")
    context.close()


def test_the_refresh_can_be_paused_and_resumed(browser, live_server, viewer, incident):
    from playwright.sync_api import expect

    context, page = open_page(browser, live_server, DESKTOP)
    page.clock.install()
    log_in(page, viewer, "/?range=1h")
    expect(page.locator(".volume-chart .bucket")).to_have_count(61)  # a bar a minute
    page.click("[data-pause]")
    expect(page.locator("[data-pause]")).to_have_text("Resume refresh")

    Decision.objects.create(created_at=timezone.now(), category="general", complexity="medium", outcome="failed_fast",
                            primary_key="gpt-4o", reason="a refusal that arrived while paused", trace=[], policy_version=1)
    page.clock.run_for(31_000)
    expect(page.locator("#latest-fallbacks")).not_to_contain_text("a refusal that arrived while paused")

    page.click("[data-pause]")
    expect(page.locator("#latest-fallbacks")).to_contain_text("a refusal that arrived while paused")
    assert "range=1h" in page.locator("#overview-body").get_attribute("data-refresh-url")
    context.close()
