"""The overview's "Now" panel: quotas over their soft limit, models cooling down or unavailable, the range's top
reasons, each linked to the object to edit and to the history filtered to it; providers without credentials
quiet; a ledger that is not being written said so."""

import re
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from providers.models import AvailabilityCheck
from router.counters import redis_counters
from router.models import Decision, UsageEvent
from switchboard.vocabulary import Availability, Metric, Window
from tests.calls import report
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route

pytestmark = pytest.mark.django_db


@pytest.fixture
def policy(monkeypatch):
    """openai (credentials set): gpt-4o and gpt-4o-mini under a daily token quota; zhipu without credentials."""
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-test")
    openai = ProviderFactory(slug="openai", kind="openai", credential_env="TEST_OPENAI_KEY")
    zhipu = ProviderFactory(slug="zhipu", kind="openai_compatible", base_url="https://glm.example.invalid/v4")
    gpt = LLMModelFactory(key="gpt-4o", provider=openai)
    mini = LLMModelFactory(key="gpt-4o-mini", provider=openai)
    glm = LLMModelFactory(key="glm-4-5", provider=zhipu, availability=Availability.UNAVAILABLE,
                          availability_reason="not_found_error: glm-4-5", checked_at=timezone.now())
    quota = QuotaFactory(provider=openai, name="tokens-day", metric=Metric.TOKENS, window=Window.DAY, limit=Decimal(1_000_000),
                         soft_limit_ratio=Decimal("0.8"))
    make_route("general", [gpt, mini, glm])
    return {"quota": quota, "gpt": gpt, "glm": glm, "zhipu": zhipu}


def section(page: str, element_id: str) -> str:
    start = page.index(f'id="{element_id}"')
    return page[start:page.index("</div>\n    <div class=\"now-col\"", start) if element_id != "now-reasons" else page.index("</section>", start)]


def quota_fallback(quota, minutes_ago: int, outcome: str = "fallback") -> Decision:
    blocked = {"quota": "openai/tokens-day", "quota_id": quota.id, "metric": "tokens", "window": "day", "reset": "rolling",
               "used": 900_000, "estimate": 2000, "soft_limit": 800_000, "limit": 1_000_000, "frees_at": time.time() + 3600}
    trace = [{"model": "gpt-4o", "provider": "openai", "verdict": "skipped", "reason": "quota", "quotas": [blocked]}]
    if outcome == "fallback":
        trace.append({"model": "gpt-4o-mini", "provider": "openai", "verdict": "chosen", "reason": "within limits"})
    return Decision.objects.create(created_at=timezone.now() - timedelta(minutes=minutes_ago), category="general", complexity="medium",
                                   outcome=outcome, model_key="gpt-4o-mini" if outcome == "fallback" else "", primary_key="gpt-4o",
                                   reason="gpt-4o passed over", trace=trace, policy_version=1)


def test_a_quota_over_its_soft_limit_shows_with_its_ratio_when_it_frees_and_its_links(client, viewer, policy, settings):
    settings.REDIS_URL = ""
    UsageEvent.objects.create(created_at=timezone.now() - timedelta(minutes=20), model_key="gpt-4o", provider_slug="openai",
                              input_tokens=850_000)

    page = client.get("/").content.decode()

    quotas = section(page, "now-quotas")
    assert "openai/tokens-day" in quotas and "85%" in quotas
    assert re.search(r"frees in 2[34] h", quotas)
    assert "hard limit in 11 min at 850.0K tokens/h" in quotas  # 150K left at 850K an hour
    quota_id = policy["quota"].id
    assert f'href="/quotas/{quota_id}/"' in quotas
    assert f'href="/admin/providers/quota/{quota_id}/change/"' in quotas
    assert f'href="/fallbacks/?quota={quota_id}"' in quotas


def test_a_quiet_day_says_every_quota_and_model_is_fine(client, viewer, policy, settings):
    settings.REDIS_URL = ""
    policy["glm"].availability = Availability.AVAILABLE
    policy["glm"].save()

    page = client.get("/").content.decode()

    assert "None: every quota is under its soft limit." in page
    assert "None: every model can be chosen." in page
    assert "No fallbacks or refusals in this range." in page


@pytest.mark.parametrize("counters", ["database", "redis"], indirect=True)
def test_a_model_cooling_down_shows_until_when_why_and_which_key_reported_it(client, viewer, policy, api, counters):
    report(api, model="gpt-4o", status="rate_limited", retry_after=120, input_tokens=0, output_tokens=0)

    page = client.get("/").content.decode()

    models = section(page, "now-models")
    assert 'data-model="gpt-4o"' in models and "cooling down" in models
    assert re.search(r"until \d\d:\d\d:\d\d UTC \(in (2 min|1[12]\d s)\)", models)
    assert "reported by key <strong>test-service</strong>" in models
    assert f'href="/admin/providers/llmmodel/{policy["gpt"].pk}/change/"' in models
    assert 'href="/fallbacks/?model=gpt-4o&amp;reason=cooldown"' in models


def test_an_unavailable_model_shows_with_the_reason_and_links(client, viewer, policy, settings):
    settings.REDIS_URL = ""

    models = section(client.get("/").content.decode(), "now-models")

    assert 'data-model="glm-4-5"' in models and "unavailable" in models and "not_found_error: glm-4-5" in models
    assert f'href="/admin/providers/llmmodel/{policy["glm"].pk}/change/"' in models


def test_the_top_reasons_of_the_range_count_each_quota_and_link_to_the_history(client, viewer, policy, settings):
    settings.REDIS_URL = ""
    quota = policy["quota"]
    for minutes_ago in (5, 10, 15):
        quota_fallback(quota, minutes_ago)
    for minutes_ago in (7, 8):
        quota_fallback(quota, minutes_ago, outcome="exhausted")
    quota_fallback(quota, 60 * 3)  # three hours ago: outside the last hour

    last_hour = section(client.get("/", {"range": "1h"}).content.decode(), "now-reasons")
    whole_day = section(client.get("/").content.decode(), "now-reasons")

    rows = re.findall(r'<td class="count">(\d+)</td>\s*<td><span class="badge outcome-(\w+)">', last_hour)
    assert rows == [("3", "fallback"), ("2", "exhausted")]
    assert f'href="/quotas/{quota.id}/">openai/tokens-day</a>' in last_hour
    assert f'href="/fallbacks/?outcome=fallback&amp;quota={quota.id}&amp;reason=quota"' in last_hour
    assert "(last hour)" in last_hour
    assert re.findall(r'<td class="count">(\d+)</td>', whole_day) == ["4", "2"]


def test_the_history_link_of_a_reason_lists_those_decisions(client, viewer, policy, settings):
    settings.REDIS_URL = ""
    quota_fallback(policy["quota"], 5)
    Decision.objects.create(created_at=timezone.now(), category="general", complexity="medium", outcome="fallback",
                            model_key="gpt-4o-mini", primary_key="gpt-4o", reason="a cooldown", policy_version=1,
                            trace=[{"model": "gpt-4o", "verdict": "skipped", "reason": "cooldown", "until": time.time() + 60}])

    page = client.get("/fallbacks/", {"outcome": "fallback", "quota": policy["quota"].id, "reason": "quota"}).content.decode()

    assert "1 decision" in page and "a cooldown" not in page


def test_a_provider_without_credentials_is_shown_quietly_as_not_configured(client, viewer, policy, settings):
    settings.REDIS_URL = ""
    AvailabilityCheck.objects.create(provider=policy["zhipu"], started_at=timezone.now(), ok=False,
                                     error="no API key: set credential_env (an environment variable holding the key) or store a secret")

    page = client.get("/").content.decode()

    assert "Not configured (no credentials, not called):" in page
    assert f'href="/admin/providers/provider/{policy["zhipu"].pk}/change/">zhipu</a>' in page
    card = page[page.index('id="provider-zhipu"'):page.index("</article>", page.index('id="provider-zhipu"'))]
    assert "not configured" in card
    assert "no API key" not in page  # not a red error box
    assert "not configured" not in page[page.index('id="provider-openai"'):page.index("</article>", page.index('id="provider-openai"'))]


def test_without_a_worker_draining_the_panel_says_the_ledger_is_not_being_written(client, viewer, policy, redis_client):
    client.get("/")  # the counters are built (a rebuild drains the stream first)
    twenty_seconds_ago = int(time.time() * 1000) - 20_000
    redis_client.xadd(redis_counters().stream_key, {"kind": "decision", "row": "{}"}, id=f"{twenty_seconds_ago}-0")

    page = client.get("/").content.decode()

    alert = page[page.index('id="ledger-alert"'):page.index("</p>", page.index('id="ledger-alert"'))]
    assert "The ledger is not being written: 1 decision" in alert
    assert "the oldest for 20 s" in alert
    assert "worker" in alert


def test_a_drained_ledger_raises_no_alert(client, viewer, policy, redis_client):
    assert 'id="ledger-alert"' not in client.get("/").content.decode()
