"""Soft-limit tuning: the fallbacks each quota's soft limit caused, how many were unnecessary, and the
ratio that would have kept it under its hard limit, on histories whose answers are worked out by hand."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from router.tuning import tune
from tests.factories import DecisionFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_api_key

NOW = timezone.now().replace(second=0, microsecond=0)


def fallback(at, used: int, estimate: int, limit: int = 1000, quota_id: int = 1) -> None:
    """A fallback whose primary, gpt-4o, the quota turned away at `used` + `estimate` of `limit`."""
    blocked = {"quota": "openai/tokens-hour", "quota_id": quota_id, "used": used, "estimate": estimate, "soft_limit": 500,
               "limit": limit, "metric": "tokens", "window": "hour", "reset": "rolling", "frees_at": None}
    DecisionFactory(created_at=at, outcome="fallback", model_key="gpt-4o-mini", input_tokens=estimate, output_tokens=0,
                    trace=[{"model": "gpt-4o", "verdict": "skipped", "reason": "quota", "quotas": [blocked]},
                           {"model": "gpt-4o-mini", "verdict": "chosen", "reason": "within limits"}])


@pytest.fixture
def history(db):
    """A tokens-per-hour quota on gpt-4o, limit 1,000, soft limit 0.5, and two episodes far enough apart:

    - 5 h ago 500 tokens, then a fallback at 500 + 300: the hour peaks at 500, and 500 + 300 fits: unnecessary;
    - 2 h ago one call of 700 (admitted at 0), then a fallback at 700 + 200, then a critical call of 250 using the
      headroom: the hour peaks at 950, and 950 + 200 = 1,150 does not fit: necessary.

    Replaying at 0.70 lets only the first through (800 at most); at 0.71 the second too (1,150): 0.70 is the answer.
    """
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai)
    LLMModelFactory(key="gpt-4o-mini", provider=openai)
    quota = QuotaFactory(provider=openai, name="tokens-hour", metric="tokens", window="hour", limit=1000, soft_limit_ratio=0.5,
                         models=[gpt4o])
    DecisionFactory(created_at=NOW - timedelta(hours=5), input_tokens=500, output_tokens=0)
    fallback(NOW - timedelta(hours=5) + timedelta(minutes=1), used=500, estimate=300, quota_id=quota.id)
    DecisionFactory(created_at=NOW - timedelta(hours=2), input_tokens=700, output_tokens=0)
    fallback(NOW - timedelta(hours=2) + timedelta(minutes=1), used=700, estimate=200, quota_id=quota.id)
    DecisionFactory(created_at=NOW - timedelta(hours=2) + timedelta(minutes=10), input_tokens=250, output_tokens=0)
    return quota


def test_it_counts_the_fallbacks_the_soft_limit_caused_and_those_that_were_unnecessary(history):
    [row] = tune(days=7, now=NOW)

    assert (row.fallbacks, row.unnecessary, row.unnecessary_rate) == (2, 1, 0.5)
    assert row.peak_ratio == 0.95
    assert row.suggested_soft_limit_ratio == 0.7


def test_a_fallback_at_the_hard_limit_is_not_the_soft_limits(history):
    fallback(NOW - timedelta(hours=1), used=800, estimate=300, quota_id=history.id)  # 1,100 > 1,000: the hard limit

    [row] = tune(days=7, now=NOW)

    assert row.fallbacks == 2


def test_a_fallback_for_another_reason_is_not_the_soft_limits(history):
    DecisionFactory(created_at=NOW - timedelta(hours=1), outcome="fallback", model_key="gpt-4o-mini",
                    trace=[{"model": "gpt-4o", "verdict": "skipped", "reason": "cooldown"},
                           {"model": "gpt-4o-mini", "verdict": "chosen", "reason": "within limits"}])

    [row] = tune(days=7, now=NOW)

    assert row.fallbacks == 2


def test_a_cost_quota_is_judged_in_dollars(history):
    QuotaFactory(provider=history.provider, name="budget-day", metric="cost_usd", window="day", limit=2, models=[])
    DecisionFactory(created_at=NOW - timedelta(hours=3), cost_usd=Decimal("0.25"))
    DecisionFactory(created_at=NOW - timedelta(hours=3), model_key="gpt-4o-mini", cost_usd=Decimal("1.25"))

    rows = {row.quota.name: row for row in tune(days=7, now=NOW)}

    assert rows["budget-day"].peak_ratio == 0.75
    assert rows["tokens-hour"].peak_ratio == 0.95


def test_a_quota_that_passed_its_hard_limit_gets_no_suggestion(history):
    DecisionFactory(created_at=NOW - timedelta(minutes=30), input_tokens=1200, output_tokens=0)

    [row] = tune(days=7, now=NOW)

    assert row.suggested_soft_limit_ratio is None
    assert row.peak_ratio == 1.2


def test_when_every_fallback_had_room_the_ratio_can_go_to_one(history):
    history.limit = 2000
    history.save()
    [row] = tune(days=7, now=NOW)  # the traces were written for a limit of 1,000: both fit under it

    assert (row.unnecessary, row.suggested_soft_limit_ratio) == (2, 1.0)


def test_the_api_answers_the_tuning_and_refuses_a_period_it_cannot_judge(history, client):
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key('ops', scopes=('read',))}")

    body = api.get("/api/v1/quotas/tuning").json()

    assert body["days"] == 7
    [row] = body["results"]
    assert (row["name"], row["fallbacks"], row["unnecessary"], row["suggested_soft_limit_ratio"]) == ("tokens-hour", 2, 1, 0.7)
    for days in ("0", "-1", "8", "365", "x"):
        response = api.get("/api/v1/quotas/tuning", {"days": days})
        assert response.status_code == 400 and "days must be a whole number from 1 to 7" in response.json()["detail"]


def test_the_tuning_page_shows_each_quota_with_a_link_to_edit_its_ratio(history, client, viewer):
    page = client.get("/tuning/").content.decode()

    assert "openai/tokens-hour" in page
    assert f'href="/admin/providers/quota/{history.id}/change/"' in page
    assert client.get("/tuning/", {"days": "30"}).status_code == 400


def refusal(at, quota_id: int, outcome: str = "failed_fast") -> None:
    """A refusal whose only candidate, gpt-4o, the quota turned away."""
    blocked = {"quota": "openai/tokens-hour", "quota_id": quota_id, "used": 900, "estimate": 200, "soft_limit": 500,
               "limit": 1000, "metric": "tokens", "window": "hour", "reset": "rolling", "frees_at": None}
    DecisionFactory(created_at=at, outcome=outcome, model_key="", provider_slug="", input_tokens=0, output_tokens=0,
                    trace=[{"model": "gpt-4o", "verdict": "skipped", "reason": "quota", "quotas": [blocked]}])


def test_the_refusals_a_quota_caused_count_next_to_its_fallbacks(history):
    refusal(NOW - timedelta(hours=1), history.id)
    refusal(NOW - timedelta(hours=1, minutes=5), history.id, outcome="exhausted")
    refusal(NOW - timedelta(days=8), history.id)  # before the period
    DecisionFactory(created_at=NOW - timedelta(hours=1), outcome="failed_fast", model_key="", input_tokens=0, output_tokens=0,
                    trace=[{"model": "gpt-4o", "verdict": "skipped", "reason": "cooldown", "until": 1.0}])

    [row] = tune(days=7, now=NOW)

    assert (row.fallbacks, row.refusals) == (2, 2)
    assert (row.since, row.until) == (NOW - timedelta(days=7), NOW)


def test_two_readings_with_no_new_traffic_give_the_same_figures(history):
    DecisionFactory(created_at=NOW + timedelta(seconds=20), input_tokens=400, output_tokens=0)  # the minute under way

    first = tune(days=7, now=NOW + timedelta(seconds=30))
    second = tune(days=7, now=NOW + timedelta(seconds=50))

    assert first == second
    assert first[0].until == NOW  # the period ends at the last whole minute


def test_the_tuning_page_says_its_period_as_of_when_and_how_a_suggestion_is_computed(history, client, viewer):
    refusal(NOW - timedelta(hours=1), history.id)

    page = client.get("/tuning/").content.decode()

    assert "How a suggestion is computed" in page and "in steps of 0.01 up to 1" in page
    assert "(the last 7 days to the last whole minute)" in page
    assert "As of <time" in page
    assert f'<td data-label="Refusals" class="refusals"><a href="/fallbacks/?quota={history.id}&amp;reason=quota">1</a></td>' in page
    assert f'href="/quotas/{history.id}/">openai/tokens-hour</a>' in page
