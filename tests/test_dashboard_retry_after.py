"""Where a refusal's Retry-After comes from: the trace and the what-if list when each passed-over candidate frees
up (its quota, cooldown or rate limit) and mark the earliest, which the Retry-After counts to."""

import re
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from dashboard.selectors import free_ups
from router.models import Decision, UsageEvent
from switchboard.vocabulary import Metric, Window
from tests.calls import report
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route

pytestmark = pytest.mark.django_db


def quota_entry(model: str, label: str, quota_id: int, frees_at: float | None) -> dict:
    return {"model": model, "provider": "p", "verdict": "skipped", "reason": "quota", "quotas": [
        {"quota": label, "quota_id": quota_id, "metric": "tokens", "window": "day", "reset": "rolling", "used": 10, "estimate": 1,
         "soft_limit": 8, "limit": 10, "frees_at": frees_at}]}


def test_the_earliest_candidate_to_free_up_is_marked_whatever_its_place_in_the_trace():
    now = time.time()
    trace = [quota_entry("claude-opus-4-5", "anthropic/opus-day", 3, now + 86_599),
             {"model": "gpt-4o", "verdict": "skipped", "reason": "cooldown", "detail": "cooling down", "until": now + 199},
             {"model": "gpt-4o-mini", "verdict": "skipped", "reason": "unavailable", "detail": "404"},
             {"model": "glm-4-5", "verdict": "skipped", "reason": "rate_limit", "detail": "0 requests left", "until": now + 30_000}]

    sources = free_ups(trace)

    assert [(s.model, s.reason, s.earliest) for s in sources] == [
        ("gpt-4o", "cooldown", True), ("glm-4-5", "rate_limit", False), ("claude-opus-4-5", "quota", False)]
    assert sources[2].quota == "anthropic/opus-day" and sources[2].quota_id == 3


def test_a_candidate_held_by_several_quotas_frees_up_when_the_last_does():
    entry = quota_entry("gpt-4o", "openai/tokens-minute", 1, 100.0)
    entry["quotas"].append(quota_entry("gpt-4o", "openai/tokens-day", 2, 5000.0)["quotas"][0])

    [source] = free_ups([entry])

    assert (source.quota, source.at) == ("openai/tokens-day", 5000.0)


def test_a_quota_the_estimate_alone_exceeds_has_no_known_time():
    [source] = free_ups([quota_entry("gpt-4o", "openai/tokens-day", 2, None)])

    assert source.at is None and source.earliest


@pytest.fixture
def refused(settings, db):
    """general on gpt-4o, then claude-opus-4-5, whose daily quota was used up an hour ago (it frees in 23 h)."""
    settings.REDIS_URL = ""
    openai = ProviderFactory(slug="openai", kind="openai")
    anthropic = ProviderFactory(slug="anthropic", kind="anthropic")
    gpt = LLMModelFactory(key="gpt-4o", provider=openai)
    opus = LLMModelFactory(key="claude-opus-4-5", provider=anthropic)
    quota = QuotaFactory(provider=anthropic, name="opus-day", metric=Metric.TOKENS, window=Window.DAY, limit=Decimal(100_000),
                         soft_limit_ratio=Decimal("0.8"), models=[opus])
    make_route("general", [gpt, opus])
    UsageEvent.objects.create(created_at=timezone.now() - timedelta(hours=1), model_key="claude-opus-4-5", provider_slug="anthropic",
                              input_tokens=100_000)
    return quota


def test_the_what_if_says_the_retry_after_is_the_cooldown_not_the_daily_quota(client, viewer, refused, api):
    report(api, model="gpt-4o", status="rate_limited", retry_after=199, input_tokens=0, output_tokens=0)

    page = client.get("/what-if/", {"category": "general", "complexity": "medium", "estimated_input_tokens": 100,
                                    "estimated_output_tokens": 100}).content.decode()

    retry_after = int(re.search(r"Retry-After: (\d+) s", page).group(1))
    assert 190 <= retry_after <= 199
    sources = page[page.index('class="retry-after-sources'):]
    assert f"<strong>Retry-After</strong> ({retry_after} s) counts to the earliest time any candidate frees up" in sources
    earliest = sources[sources.index('class="earliest"'):sources.index("</li>", sources.index('class="earliest"'))]
    assert "<code>gpt-4o</code>" in earliest and "its cooldown" in earliest and "← Retry-After" in earliest
    assert f'quota <a href="/quotas/{refused.id}/">anthropic/opus-day</a>' in sources


def test_the_history_trace_of_a_refusal_says_where_its_retry_after_comes_from(client, viewer, refused, api):
    report(api, model="gpt-4o", status="rate_limited", retry_after=199, input_tokens=0, output_tokens=0)
    api.post("/api/v1/route", {"category": "general", "estimated_input_tokens": 100, "estimated_output_tokens": 100}, format="json")
    assert Decision.objects.filter(outcome="exhausted").exists()

    page = client.get("/fallbacks/").content.decode()

    assert "counts to the earliest time any candidate frees up" in page
    assert "its cooldown" in page and "anthropic/opus-day</a>" in page
