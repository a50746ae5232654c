"""The dashboard in a real browser (Debian's chromium driven by Playwright) against the live server.

Logs in through the admin login page, reads the overview (and watches it refresh itself), filters the
fallback history and exports it as CSV, and runs a what-if. Outside CI a missing chromium skips these
tests; in CI (the CI environment variable set) it fails them. The overview with a day of traffic is kept as a
screenshot (tests.browser.screenshot).
"""

import csv
import random
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone

from providers.models import AvailabilityCheck, LLMModel, Quota
from router.counting import Usage
from router.decisions import what_if
from router.engine import RouteRequest
from router.models import Decision, UsageEvent
from switchboard.vocabulary import Availability
from tests.browser import PASSWORD, log_in, screenshot

EXAMPLE_POLICY = Path(django_settings.BASE_DIR) / "policy.example.yaml"

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(autouse=True)
def dashboard_settings(settings, monkeypatch):
    """Database counters, a fast password hasher, and keys for every provider of the example policy."""
    settings.REDIS_URL = ""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ZHIPU_API_KEY"):
        monkeypatch.setenv(name, "a-test-key")


@pytest.fixture
def viewer() -> User:
    user = User.objects.create_user("ops-viewer", password=PASSWORD, is_staff=True)
    group, _ = Group.objects.get_or_create(name="policy viewers")
    group.permissions.add(Permission.objects.get(content_type__app_label="router", codename="view_decision"))
    user.groups.add(group)
    return user


# Realistic data: the example policy, availability, usage, and a day of decisions ----------------------


def load_example_policy() -> None:
    from router.policy.apply import apply_policy
    from router.policy.document import parse_policy

    apply_policy(parse_policy(EXAMPLE_POLICY.read_text()))


def quota(provider: str, name: str) -> Quota:
    return Quota.objects.get(provider__slug=provider, name=name)


def demo_data() -> dict:
    """The example policy with a day of traffic: an Anthropic pool over its soft limit, an outage, a failing refresh."""
    load_example_policy()
    now = timezone.now()
    checked = now - timedelta(minutes=4)
    LLMModel.objects.update(availability=Availability.AVAILABLE, checked_at=checked)
    LLMModel.objects.filter(key="claude-opus-4-5").update(
        availability=Availability.UNAVAILABLE, availability_reason="not_found_error: this API key cannot reach claude-opus-4-5")
    LLMModel.objects.filter(provider__slug="zhipu").update(
        availability=Availability.UNKNOWN, availability_reason="models.list() failed: ConnectTimeout after 10 s")
    for key, profile in (("bedrock-sonnet-4-5", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
                         ("bedrock-sonnet-3-7", "us.anthropic.claude-3-7-sonnet-20250219-v1:0"),
                         ("bedrock-haiku-3-5", "us.anthropic.claude-3-5-haiku-20241022-v1:0")):
        LLMModel.objects.filter(key=key).update(invoke_id=profile)
    for provider in ("openai", "anthropic", "bedrock", "zhipu"):
        AvailabilityCheck.objects.create(provider_id=_provider_id(provider), started_at=now - timedelta(minutes=34), duration_ms=820)
    for provider in ("openai", "anthropic", "bedrock"):
        AvailabilityCheck.objects.create(provider_id=_provider_id(provider), started_at=checked, duration_ms=640)
    AvailabilityCheck.objects.create(provider_id=_provider_id("zhipu"), started_at=checked, duration_ms=10_012, ok=False,
                                     error="ConnectTimeout: GET https://glm.example.invalid/api/paas/v4/models timed out after 10 s")

    # Usage reported by services: (model, tokens, hours ago). The last hour sets the burn rate.
    reports = [("gpt-4o", 1_500_000, 9), ("gpt-4o", 420_000, 3), ("gpt-4o-mini", 180_000, 2), ("gpt-4o", 310_000, 0.4),
               ("gpt-4-turbo", 6_500_000, 60), ("claude-sonnet-4-5", 9_800_000, 70), ("claude-3-5-sonnet", 6_900_000, 20),
               ("claude-3-5-sonnet", 520_000, 0.5), ("claude-opus-4-5", 1_300_000, 30), ("glm-4-5", 900_000, 5),
               ("bedrock-sonnet-3-7", 260_000, 0.05)]
    events = [UsageEvent(created_at=now - timedelta(hours=hours), model_key=key, provider_slug=LLMModel.objects.get(key=key).provider.slug,
                         input_tokens=tokens * 2 // 3, output_tokens=tokens - tokens * 2 // 3, caller="agents-service")
              for key, tokens, hours in reports]
    events += [UsageEvent(created_at=now - timedelta(seconds=5 + 10 * n), model_key="bedrock-sonnet-4-5", provider_slug="bedrock",
                          input_tokens=700, output_tokens=300, caller="bedrock-agent") for n in range(3)]
    UsageEvent.objects.bulk_create(events)

    # A day of decisions, as the router would have stored them: each scenario's real walk, repeated.
    openai_day, sonnet_pool = quota("openai", "tokens-day"), quota("anthropic", "sonnet-pool")
    bedrock_requests = quota("bedrock", "requests-minute-bedrock-sonnet-4-5")
    scenarios = {
        "general": (RouteRequest(category="general", complexity="medium", estimated_input_tokens=1200, estimated_output_tokens=800), {}, ()),
        "general-low": (RouteRequest(category="general", complexity="low", estimated_input_tokens=400, estimated_output_tokens=200), {}, ()),
        "cheap": (RouteRequest(tier="cheap", estimated_input_tokens=300, estimated_output_tokens=100), {}, ()),
        "agents": (RouteRequest(category="auxiliary_agents", estimated_input_tokens=3000, estimated_output_tokens=1000), {sonnet_pool.id: 0.5}, ()),
        "agents-pool-full": (RouteRequest(category="auxiliary_agents", estimated_input_tokens=3000, estimated_output_tokens=1000), {}, ()),
        "bedrock-minute": (RouteRequest(category="bedrock_agent", estimated_input_tokens=1500, estimated_output_tokens=500),
                           {bedrock_requests.id: 1.0}, ()),
        "gpt-outage": (RouteRequest(category="general", complexity="medium", estimated_input_tokens=1200, estimated_output_tokens=800),
                       {}, ("gpt-4o",)),
        "security-refused": (RouteRequest(category="security_auth_change", estimated_input_tokens=5000, estimated_output_tokens=2000),
                             {openai_day.id: 1.0}, ()),
        "agents-exhausted": (RouteRequest(category="auxiliary_agents", estimated_input_tokens=3000, estimated_output_tokens=1000),
                             {sonnet_pool.id: 1.0}, ("claude-3-5-haiku", "glm-4-5", "gpt-4o-mini")),
    }
    walks = {name: what_if(request, caller="demo", used_ratio_overrides=overrides, unavailable=frozenset(down))[0]
             for name, (request, overrides, down) in scenarios.items()}
    rng = random.Random(4)
    decisions = []
    for minutes_ago in range(24 * 60 - 1, 0, -1):
        hour_of_day = (now - timedelta(minutes=minutes_ago)).hour
        busy = 0.5 + 0.5 * (8 <= hour_of_day <= 19)
        if rng.random() > busy:
            continue
        pool_full = minutes_ago < 5 * 60  # the Sonnet pool crossed its soft limit five hours ago
        names = ["general", "general-low", "cheap", "agents-pool-full" if pool_full else "agents", "bedrock-minute",
                 "gpt-outage", "security-refused", "agents-exhausted"]
        weights = [40, 15, 15, 20, 3, 2 if 300 < minutes_ago < 420 else 0.2, 1, 0.5]
        name = rng.choices(names, weights)[0]
        decisions.append(replace(
            walks[name], id=uuid.uuid4(), created_at=now - timedelta(minutes=minutes_ago, seconds=rng.randint(0, 59)),
            caller=rng.choice(["agents-service", "billing", "ci-bot"]), usage=Usage(),
        ).to_model())
    Decision.objects.bulk_create(decisions)
    return {"decisions": len(decisions)}


def _provider_id(slug: str) -> int:
    from providers.models import Provider

    return Provider.objects.get(slug=slug).pk


# The tests -------------------------------------------------------------------------------------------------


def test_the_overview_shows_quotas_and_availability_and_refreshes_itself(page, viewer):
    from playwright.sync_api import expect

    demo_data()
    page.clock.install()  # fake timers: the 15 s refresh is run on demand below
    log_in(page, viewer, "/")

    sonnet_pool = page.locator('.quota[data-quota="anthropic/sonnet-pool"]')
    expect(sonnet_pool.locator(".bar-fill")).to_be_visible()
    expect(sonnet_pool.locator(".quota-ratio")).to_have_text("86%")
    expect(sonnet_pool).to_contain_text("17.2M tokens of 20.0M tokens")
    expect(sonnet_pool).to_contain_text("Over the soft limit")
    opus = page.locator('tr[data-model="claude-opus-4-5"]')
    expect(opus).to_contain_text("unavailable")
    expect(opus).to_contain_text("4 min ago")
    expect(page.locator("#provider-zhipu")).to_contain_text("ConnectTimeout")
    expect(page.locator(".volume-chart .bucket")).to_have_count(25)
    expect(page.locator('#now-quotas [data-quota="anthropic/sonnet-pool"]')).to_contain_text("86%")
    assert page.locator("#latest-fallbacks tbody tr").count() == 10

    screenshot(page, "overview-day-1440", full_page=True)

    Decision.objects.create(created_at=timezone.now(), category="security_auth_change", complexity="high", outcome="failed_fast",
                            primary_key="gpt-4-turbo", reason="a refusal that arrived after the page was loaded", trace=[],
                            policy_version=1)
    page.clock.run_for(16_000)
    expect(page.locator("#latest-fallbacks")).to_contain_text("a refusal that arrived after the page was loaded")
    assert page.url.endswith("/")  # swapped in place, no navigation


def test_the_history_filters_and_exports_what_it_shows(page, viewer):
    from playwright.sync_api import expect

    demo_data()
    log_in(page, viewer, "/fallbacks/")

    page.select_option("#id_outcome", "failed_fast")
    page.select_option("#id_reason", "quota")
    page.click("#fallback-filters button[type=submit]")
    page.wait_for_url("**outcome=failed_fast**")
    rows = page.locator("#fallback-history tbody.decision")
    expected = list(Decision.objects.filter(outcome="failed_fast").order_by("-created_at").values_list("id", flat=True))
    assert 0 < len(expected)
    expect(page.locator(".result-count")).to_contain_text(f"{len(expected)} decision")
    expect(rows.first.locator(".badge.outcome-failed_fast")).to_have_text("failed fast")
    assert set(rows.locator(".decision-row td:nth-child(3) .badge").all_inner_texts()) == {"failed fast"}

    first = rows.first
    expect(first.locator(".trace")).to_be_hidden()
    first.locator("summary").click()
    expect(first.locator(".trace")).to_be_visible()
    expect(first.locator(".trace")).to_contain_text("openai/tokens-day")

    with page.expect_download() as download_info:
        page.click("#export-csv")
    download = download_info.value
    assert download.suggested_filename.startswith("fallbacks-") and download.suggested_filename.endswith(".csv")
    with open(download.path(), newline="") as exported:
        exported_rows = list(csv.DictReader(exported))
    assert [row["decision_id"] for row in exported_rows] == [str(pk) for pk in expected]
    assert {row["outcome"] for row in exported_rows} == {"failed_fast"}
    assert all(row["category"] == "security_auth_change" for row in exported_rows)


def test_a_what_if_shows_the_model_it_would_choose_and_counts_nothing(page, viewer):
    from playwright.sync_api import expect

    demo_data()
    stored = Decision.objects.count()
    log_in(page, viewer, "/what-if/")

    page.select_option("#id_category", "general")
    page.select_option("#id_complexity", "medium")
    page.fill("#id_estimated_input_tokens", "2000")
    page.fill(f"#id_quota_{quota('openai', 'tokens-day').id}", "90")
    page.click("#what-if-form button[type=submit]")

    # gpt-4o: its daily quota assumed at 90%; claude-3-5-sonnet: the Sonnet pool is over its soft limit; glm-4-5 is next.
    expect(page.locator("#chosen-model")).to_have_text("glm-4-5")
    expect(page.locator("#what-if-decision")).to_contain_text("HTTP 200")
    expect(page.locator(".trace tbody tr")).to_have_count(3)
    expect(page.locator("#id_category")).to_have_value("general")  # the form keeps what was asked

    page.check("input[name=unavailable][value=glm-4-5]")
    page.check("input[name=unavailable][value=gpt-4o-mini]")
    page.click("#what-if-form button[type=submit]")
    expect(page.locator("#what-if-decision")).to_contain_text("HTTP 429 · no_capacity")
    assert Decision.objects.count() == stored
