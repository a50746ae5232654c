"""A page per quota: its usage over the range against its soft and hard limits, the policy changes that touched
it as markers, the fallbacks and refusals it caused, its tuning and the link to edit it."""

import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from dashboard import selectors
from router.models import Decision, PolicyVersion, UsageEvent
from router.snapshot import current_snapshot
from switchboard.vocabulary import Metric, Window
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def database_counters(settings):
    settings.REDIS_URL = ""


@pytest.fixture
def quota():
    """openai's hourly token quota on gpt-4o: limit 1,000, soft limit at 0.5."""
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt = LLMModelFactory(key="gpt-4o", provider=openai)
    mini = LLMModelFactory(key="gpt-4o-mini", provider=openai)
    make_route("general", [gpt, mini])
    return QuotaFactory(provider=openai, name="tokens-hour", metric=Metric.TOKENS, window=Window.HOUR, limit=Decimal(1000),
                        soft_limit_ratio=Decimal("0.5"), models=[gpt])


def use(tokens: int, at: datetime, model: str = "gpt-4o") -> None:
    UsageEvent.objects.create(created_at=at, model_key=model, provider_slug="openai", input_tokens=tokens)


def refusal(quota, at: datetime, outcome: str = "failed_fast") -> Decision:
    blocked = {"quota": "openai/tokens-hour", "quota_id": quota.id, "metric": "tokens", "window": "hour", "reset": "rolling",
               "used": 900, "estimate": 200, "soft_limit": 500, "limit": 1000, "frees_at": time.time() + 600}
    return Decision.objects.create(created_at=at, category="general", complexity="medium", outcome=outcome, primary_key="gpt-4o",
                                   reason="turned away by openai/tokens-hour", policy_version=3,
                                   trace=[{"model": "gpt-4o", "provider": "openai", "verdict": "skipped", "reason": "quota",
                                           "quotas": [blocked]}])


def test_the_usage_replays_the_rolling_window_from_the_ledger(quota):
    spec = selectors.quota_spec(quota.id)
    now = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    use(300, now - timedelta(minutes=150))  # 09:30, leaves the window at 10:30
    use(400, now - timedelta(minutes=100))  # 10:20, leaves at 11:20
    use(500, now - timedelta(minutes=40))  # 11:20
    use(999, now - timedelta(minutes=50), model="gpt-4o-mini")  # not on this quota

    points = {p.at.strftime("%H:%M"): p.used for p in selectors.quota_usage(spec, now - timedelta(hours=3), now, 1800)}

    # Each half hour's highest: 300 + 400 from 10:20 to 10:30, then 400 alone, then 500 alone from 11:20.
    assert points == {"09:00": 0, "09:30": 300, "10:00": 700, "10:30": 400, "11:00": 500, "11:30": 500, "12:00": 500}


def test_the_page_draws_usage_with_its_limits_and_the_policy_changes_that_touched_it(client, viewer, quota):
    now = timezone.now()
    use(600, now - timedelta(minutes=20))
    PolicyVersion.objects.create(number=7, author="ops@example.com", source="admin", document={}, changes=[
        {"change": "changed", "kind": "quota", "name": "openai/tokens-hour", "fields": {"soft_limit_ratio": {"old": 0.8, "new": 0.5}}}])
    PolicyVersion.objects.create(number=8, author="ops@example.com", source="admin", document={}, changes=[
        {"change": "changed", "kind": "quota", "name": "openai/tokens-day", "fields": {"limit": {"old": 1, "new": 2}}}])

    page = client.get(f"/quotas/{quota.id}/", {"range": "6h"}).content.decode()

    assert "<h1>Quota openai/tokens-hour</h1>" in page
    assert "As of <time" in page
    assert 'class="limit-hard"' in page and 'class="limit-soft"' in page
    assert re.search(r'<polyline class="usage-line" points="[\d., ]+"/>', page)
    assert '<a href="/policy/versions/7/" class="marker">' in page and "/policy/versions/8/" not in page
    assert "~ quota openai/tokens-hour: soft_limit_ratio: 0.8 -&gt; 0.5" in page
    assert "600 tokens of 1.0K tokens" in page  # the bar as it stands
    assert f'href="/admin/providers/quota/{quota.id}/change/"' in page


def test_it_lists_the_fallbacks_and_refusals_it_caused_with_its_tuning(client, viewer, quota):
    now = timezone.now()
    refusal(quota, now - timedelta(minutes=10))
    refusal(quota, now - timedelta(minutes=12), outcome="exhausted")
    refusal(quota, now - timedelta(days=3))  # before the range

    page = client.get(f"/quotas/{quota.id}/").content.decode()

    table = page[page.index('id="quota-decisions"'):page.index("</table>", page.index('id="quota-decisions"'))]
    assert table.count("turned away by openai/tokens-hour") == 2
    assert f'href="/fallbacks/?quota={quota.id}"' in page
    tuning = page[page.index('id="quota-tuning"'):page.index("</section>", page.index('id="quota-tuning"'))]
    assert "(last 24 h)" in tuning
    assert re.search(r"Refusals it caused</dt><dd>2</dd>", tuning)
    assert "Suggested soft-limit ratio</dt><dd>1.00" in tuning


def test_the_tuning_follows_the_range_and_says_its_period(client, viewer, quota):
    now = timezone.now()
    refusal(quota, now - timedelta(minutes=10))
    refusal(quota, now - timedelta(days=3))
    refusal(quota, now - timedelta(days=9))

    def tuning(**params) -> str:
        page = client.get(f"/quotas/{quota.id}/", params).content.decode()
        return page[page.index('id="quota-tuning"'):page.index("</section>", page.index('id="quota-tuning"'))]

    week = tuning(range="7d")
    end = now.replace(second=0, microsecond=0)
    assert "(last 7 days)" in week and re.search(r"Refusals it caused</dt><dd>2</dd>", week)
    assert (f"{end - timedelta(days=7):%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, as of {end:%H:%M} UTC (the last whole minute)."
            in week)
    assert re.search(r"Refusals it caused</dt><dd>1</dd>", tuning(range="1h"))

    since = now - timedelta(days=10)
    longer = tuning(range="custom", since=f"{since:%Y-%m-%dT%H:%M}", until=f"{now:%Y-%m-%dT%H:%M}")
    assert "the tuning covers at most the range's last 7 days" in longer
    assert re.search(r"Refusals it caused</dt><dd>2</dd>", longer)  # the one 9 days ago is before those 7 days


def test_the_history_filtered_to_the_quota_lists_only_what_named_it(client, viewer, quota):
    other = QuotaFactory(provider=quota.provider, name="requests-minute", metric=Metric.REQUESTS, window=Window.MINUTE, limit=10)
    refusal(quota, timezone.now() - timedelta(minutes=5))
    unrelated = refusal(quota, timezone.now() - timedelta(minutes=6))
    unrelated.trace[0]["quotas"][0]["quota_id"] = other.id
    unrelated.reason = "turned away by another quota"
    unrelated.save()

    page = client.get("/fallbacks/", {"quota": quota.id}).content.decode()

    assert "1 decision" in page and "turned away by another quota" not in page


def test_a_quota_not_in_the_policy_is_a_404(client, viewer, quota):
    assert client.get(f"/quotas/{quota.id + 100}/").status_code == 404


def test_the_page_reads_a_bounded_number_of_queries(client, viewer, quota, django_assert_max_num_queries, settings):
    settings.ROUTER_POLICY_RECHECK_SECONDS = 3600  # a render slower than the recheck interval would read the policy's version again
    current_snapshot()  # built once per policy version, not per page
    for minutes in range(0, 300, 7):
        use(10, timezone.now() - timedelta(minutes=minutes))
        refusal(quota, timezone.now() - timedelta(minutes=minutes))

    with django_assert_max_num_queries(20):
        assert client.get(f"/quotas/{quota.id}/", {"range": "7d"}).status_code == 200


def test_a_cost_quota_is_drawn_in_dollars(quota):
    cost = QuotaFactory(provider=quota.provider, name="spend-day", metric=Metric.COST_USD, window=Window.DAY, limit=Decimal(50))
    now = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    UsageEvent.objects.create(created_at=now - timedelta(minutes=30), model_key="gpt-4o", provider_slug="openai", input_tokens=1000,
                              cost_usd=Decimal("1.25"))
    UsageEvent.objects.create(created_at=now - timedelta(minutes=20), model_key="gpt-4o-mini", provider_slug="openai",
                              cost_usd=Decimal("0.50"))

    points = selectors.quota_usage(selectors.quota_spec(cost.id), now - timedelta(hours=1), now, 3600)

    assert [point.used for point in points] == [1.75, 1.75]  # 11:00 to 12:00, and the minute of 12:00
