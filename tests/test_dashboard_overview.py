"""The overview page: quota bars per provider and pool, model availability, decision volume, latest fallbacks."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from dashboard import selectors
from dashboard.charts import volume_chart
from dashboard.templatetags import dashboard_format as fmt
from providers.models import AvailabilityCheck, LLMModel, Quota
from router.models import Decision, UsageEvent
from switchboard.vocabulary import COUNTED_OUTCOMES, NOT_PRIMARY, Availability, Metric, Outcome, Reset, Window
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def dashboard_settings(settings):
    """The database counters (deterministic)."""
    settings.REDIS_URL = ""


@pytest.fixture
def policy(monkeypatch):
    """Two providers with credentials: openai with a provider-wide daily quota, anthropic with a Sonnet pool."""
    now = timezone.now()
    monkeypatch.setenv("TEST_PROVIDER_KEY", "sk-test")
    openai = ProviderFactory(slug="openai", kind="openai", credential_env="TEST_PROVIDER_KEY")
    anthropic = ProviderFactory(slug="anthropic", kind="anthropic", credential_env="TEST_PROVIDER_KEY")
    gpt = LLMModelFactory(key="gpt-4o", provider=openai, availability=Availability.AVAILABLE,
                          checked_at=now - timedelta(minutes=12))
    mini = LLMModelFactory(key="gpt-4o-mini", provider=openai, availability=Availability.AVAILABLE,
                           checked_at=now - timedelta(minutes=12))
    sonnet = LLMModelFactory(key="claude-sonnet-4-5", provider=anthropic, availability=Availability.UNAVAILABLE,
                             availability_reason="not listed by models.list()", checked_at=now - timedelta(hours=3))
    QuotaFactory(provider=openai, name="tokens-day", metric=Metric.TOKENS, window=Window.DAY, limit=Decimal(1_000_000))
    QuotaFactory(provider=anthropic, name="sonnet-pool", metric=Metric.TOKENS, window=Window.WEEK,
                 reset=Reset.CALENDAR, limit=Decimal(20_000_000), models=[sonnet])
    make_route("general", [gpt, sonnet, mini])
    return {"openai": openai, "anthropic": anthropic, "gpt": gpt, "mini": mini, "sonnet": sonnet}


def usage(model: LLMModel, tokens: int, at: datetime) -> UsageEvent:
    return UsageEvent.objects.create(created_at=at, model_key=model.key, provider_slug=model.provider.slug, input_tokens=tokens)


def decision(outcome: str, at: datetime, **fields) -> Decision:
    defaults = {"category": "general", "complexity": "medium", "primary_key": "gpt-4o", "policy_version": 1,
                "model_key": "gpt-4o-mini" if outcome in COUNTED_OUTCOMES else "", "reason": f"{outcome} for a test"}
    return Decision.objects.create(created_at=at, outcome=outcome, **(defaults | fields))


def test_it_shows_a_bar_per_quota_with_usage_soft_limit_window_and_forecast(client, viewer, policy):
    now = timezone.now()
    usage(policy["gpt"], 450_000, now - timedelta(minutes=30))

    page = client.get("/").content.decode()

    assert 'data-quota="openai/tokens-day"' in page
    assert "450.0K tokens of 1.0M tokens" in page
    assert "soft 800.0K tokens" in page
    assert "45%" in page
    assert "tokens per day · rolling" in page
    assert re.search(r"oldest usage frees in 2[34] h", page)  # the usage half an hour old stops counting a day later
    # 450K in the last hour: the soft limit (800K) in about 47 min, the hard limit (1M) in about 73 min.
    assert "At 450.0K tokens/h: soft limit in 47 min" in page
    assert "hard limit in 1.2 h" in page
    assert 'style="width: 45.0%"' in page and 'style="left: 80.0%"' in page
    assert f'href="/admin/providers/quota/{Quota.objects.get(name="tokens-day").pk}/change/"' in page


def test_it_groups_quotas_by_pool_and_says_when_a_calendar_window_resets(client, viewer, policy):
    usage(policy["sonnet"], 17_000_000, timezone.now() - timedelta(minutes=1))

    page = client.get("/").content.decode()

    assert "Pool: <span class=\"pool-models\">claude-sonnet-4-5</span>" in page
    assert "All models" in page
    assert "tokens per week · calendar" in page
    assert "resets in " in page
    assert "85%" in page
    assert "Over the soft limit" in page
    assert "quota-ratio level-warn" in page


def test_a_rate_that_cannot_fill_a_rolling_window_is_no_threat(client, viewer, policy):
    # 3 requests in the last minute of a 4-a-minute quota: 75%, but 3 an hour never fill a minute.
    QuotaFactory(provider=policy["openai"], name="requests-minute", metric=Metric.REQUESTS, window=Window.MINUTE,
                 limit=Decimal(4), soft_limit_ratio=Decimal(1), models=[policy["mini"]])
    for seconds in (5, 15, 25):
        usage(policy["mini"], 100, timezone.now() - timedelta(seconds=seconds))

    quota = client.get("/").content.decode().split('data-quota="openai/requests-minute"')[1].split('data-quota=')[0]

    assert "3 requests of 4 requests" in quota and "75%" in quota
    assert "no soft limit" in quota and "bar-soft" not in quota
    assert "At 3 requests/h it stays under its limits." in quota


def test_a_cost_quota_is_shown_in_dollars(client, viewer, policy):
    QuotaFactory(provider=policy["openai"], name="spend-day", metric=Metric.COST_USD, window=Window.DAY, limit=Decimal(100))
    UsageEvent.objects.create(created_at=timezone.now() - timedelta(minutes=20), model_key="gpt-4o", provider_slug="openai",
                              input_tokens=1000, cost_usd=Decimal("5"))

    quota = client.get("/").content.decode().split('data-quota="openai/spend-day"')[1].split('data-quota=')[0]

    assert "$5.00 of $100.00" in quota and "soft $80.00" in quota
    assert "spend (USD) per day" in quota
    assert "5%" in quota
    assert "At $5.00/h: soft limit in 15 h, hard limit in 19 h." in quota


def test_a_quota_at_its_hard_limit_is_marked_full(client, viewer, policy):
    usage(policy["gpt"], 1_200_000, timezone.now() - timedelta(hours=2))

    page = client.get("/").content.decode()

    assert "At the hard limit." in page
    assert "bar-fill level-full" in page
    assert "120%" in page
    assert 'style="width: 100.0%"' in page  # the bar stops at its end


def test_it_shows_model_availability_with_the_age_of_the_last_check_and_the_last_error(client, viewer, policy):
    now = timezone.now()
    AvailabilityCheck.objects.create(provider=policy["anthropic"], started_at=now - timedelta(minutes=40), ok=True)
    AvailabilityCheck.objects.create(provider=policy["anthropic"], started_at=now - timedelta(minutes=5), ok=False,
                                     error="AuthenticationError: 401 invalid x-api-key")
    AvailabilityCheck.objects.create(provider=policy["openai"], started_at=now - timedelta(minutes=12), ok=True)

    page = client.get("/").content.decode()

    assert "AuthenticationError: 401 invalid x-api-key" in page
    assert "Last availability check 5 min ago: <span class=\"text-bad\">failed</span>" in page
    assert "Last availability check 12 min ago: ok" in page
    assert 'availability-unavailable">unavailable</span>' in page
    assert "not listed by models.list()" in page
    assert "3 h ago" in page and "12 min ago" in page
    assert "1 unavailable" in page
    assert f'href="/admin/providers/provider/{policy["anthropic"].pk}/change/"' in page
    assert f'href="/admin/providers/llmmodel/{policy["sonnet"].pk}/change/"' in page


def test_an_error_from_an_older_check_is_still_shown_after_a_good_one(client, viewer, policy):
    now = timezone.now()
    AvailabilityCheck.objects.create(provider=policy["openai"], started_at=now - timedelta(hours=2), ok=False, error="timed out")
    AvailabilityCheck.objects.create(provider=policy["openai"], started_at=now - timedelta(minutes=2), ok=True)

    page = client.get("/").content.decode()

    assert "Last availability check 2 min ago: ok" in page
    assert "timed out" in page and "(2 h ago)" in page


def test_decision_volume_is_one_aggregate_query_per_hour_and_outcome(django_assert_num_queries):
    now = datetime(2025, 3, 10, 14, 30, tzinfo=UTC)
    decision(Outcome.PRIMARY, now - timedelta(minutes=5))
    decision(Outcome.PRIMARY, now - timedelta(minutes=10))
    decision(Outcome.FALLBACK, now - timedelta(minutes=20))
    decision(Outcome.EXHAUSTED, now - timedelta(hours=1))
    decision(Outcome.FAILED_FAST, now - timedelta(hours=23, minutes=50))
    decision(Outcome.PRIMARY, now - timedelta(hours=24, minutes=1))  # older than 24 h: not read
    decision(Outcome.PRIMARY, now + timedelta(minutes=1))  # clock skew: not in the past 24 h

    with django_assert_num_queries(1):
        volume = selectors.decision_volume(now)

    assert len(volume.buckets) == 25  # 14:00 yesterday (partial) to 14:00 today (partial)
    by_hour = {b.start.strftime("%d %H"): b for b in volume.buckets}
    assert (by_hour["10 14"].primary, by_hour["10 14"].fallback, by_hour["10 14"].refused) == (2, 1, 0)
    assert by_hour["10 13"].refused == 1
    assert by_hour["09 14"].refused == 1
    assert volume.total == 5
    assert volume.fallbacks == 1 and volume.refused == 2
    assert volume.fallback_rate == pytest.approx(3 / 5)
    assert by_hour["10 14"].fallback_rate == pytest.approx(1 / 3)
    assert by_hour["10 12"].fallback_rate is None


def test_the_chart_is_server_side_svg_with_a_bar_per_hour(client, viewer, policy):
    now = timezone.now()
    decision(Outcome.PRIMARY, now - timedelta(minutes=1))
    decision(Outcome.FALLBACK, now - timedelta(minutes=2))

    page = client.get("/").content.decode()

    assert '<svg class="volume-chart"' in page
    assert page.count('<g class="bucket">') == 25
    assert "2 decisions, 1 fallback, 0 refused, 50% not primary" in page
    assert 'class="seg seg-fallback"' in page
    assert "rate-line" in page


def test_the_chart_scales_bars_to_the_busiest_hour():
    now = timezone.now()
    for _ in range(4):
        decision(Outcome.PRIMARY, now - timedelta(hours=2))
    decision(Outcome.FALLBACK, now - timedelta(minutes=1))
    chart = volume_chart(selectors.decision_volume(now))

    busiest = max(chart.bars, key=lambda bar: sum(s.height for s in bar.segments))
    assert sum(s.height for s in busiest.segments) == pytest.approx(chart.plot_height * 4 / 5, abs=0.2)  # axis tops at 5
    assert [t.label for t in chart.count_ticks] == ["0", "2", "5"]
    assert not chart.empty


def test_with_the_counters_unreachable_it_still_shows_availability(client, viewer, policy, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.ROUTER_REDIS_DOWN = "refuse"

    response = client.get("/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "Quota usage cannot be shown: The shared counters (Redis) cannot be reached" in page
    assert 'tr class="model-row" data-model="claude-sonnet-4-5"' in page
    assert client.get("/what-if/").status_code == 200


def test_an_empty_history_says_so(client, viewer):
    page = client.get("/").content.decode()

    assert "No decisions in this range (last 24 h)." in page
    assert "No fallbacks or refusals yet" in page
    assert "No providers yet" in page


def test_it_lists_the_newest_ten_fallbacks_and_refusals_but_no_primary(client, viewer, policy):
    now = timezone.now()
    for minutes in range(12):
        decision(Outcome.FALLBACK, now - timedelta(minutes=10 + minutes), reason=f"fell back (number {minutes})")
    decision(Outcome.FAILED_FAST, now - timedelta(minutes=1), reason="security never falls back", category="security_auth_change")
    decision(Outcome.PRIMARY, now, reason="primary gpt-4o is within its limits")

    latest = selectors.latest_fallbacks()
    page = client.get("/").content.decode()

    assert len(latest) == 10
    assert latest[0].outcome == Outcome.FAILED_FAST
    assert [d.reason for d in latest[1:]] == [f"fell back (number {n})" for n in range(9)]
    assert "security never falls back" in page and "fell back (number 8)" in page
    assert "fell back (number 9)" not in page
    assert "primary gpt-4o is within its limits" not in page
    assert f'href="/admin/router/decision/{latest[0].pk}/change/"' in page


def test_the_page_refreshes_itself_from_a_fragment(client, viewer, policy):
    page = client.get("/").content.decode()
    fragment = client.get("/?fragment=1")

    assert 'data-refresh-url="/?fragment=1&amp;range=24h"' in page and 'data-refresh-seconds="15"' in page
    assert "/static/dashboard/dashboard.js" in page and "/static/dashboard/dashboard.css" in page
    assert fragment.status_code == 200
    body = fragment.content.decode()
    assert "<html" not in body and "<nav" not in body
    assert 'data-quota="openai/tokens-day"' in body
    assert "no-cache" in fragment["Cache-Control"] or "max-age=0" in fragment["Cache-Control"]


def test_the_overview_reads_the_same_number_of_queries_however_long_the_history(client, viewer, policy, settings):
    settings.ROUTER_POLICY_RECHECK_SECONDS = 3600  # no policy re-check between the two requests, however slow the machine
    now = timezone.now()
    client.get("/")  # warm the policy snapshot
    for minutes in range(3):
        decision(Outcome.FALLBACK, now - timedelta(minutes=minutes))
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        client.get("/")
    Decision.objects.bulk_create([
        Decision(created_at=now - timedelta(minutes=m % 1440), outcome=Outcome.FALLBACK if m % 3 else Outcome.PRIMARY,
                 category="general", complexity="medium", primary_key="gpt-4o", model_key="gpt-4o-mini", policy_version=1)
        for m in range(600)
    ])
    with CaptureQueriesContext(connection) as many:
        client.get("/")

    assert len(many) == len(few)


@pytest.mark.parametrize(("value", "expected"), [
    (0, "0"), (950, "950"), (4000, "4.0K"), (1234, "1.2K"), (1_200_000, "1.2M"), (999_999, "1.0M"), (2.5, "2.5"),
    (3_400_000_000, "3.4B"), (None, "–"),
])
def test_compact_numbers(value, expected):
    assert fmt.compact(value) == expected


@pytest.mark.parametrize(("value", "expected"), [(3.2, "$3.20"), (Decimal("1234.5"), "$1,234.50"), (0.0042, "$0.0042"), (2_500_000, "$2.5M")])
def test_dollars(value, expected):
    assert fmt.usd(value) == expected


@pytest.mark.parametrize(("value", "expected"), [(0.85, "85%"), (0, "0%"), (0.004, "<1%"), (0.996, "99%"), (1.0, "100%"), (1.5, "150%")])
def test_percentages(value, expected):
    assert fmt.percent(value) == expected


def test_quota_amounts_in_their_own_unit():
    assert fmt.quota_amount(1_200_000, "tokens") == "1.2M tokens"
    assert fmt.quota_amount(250, "requests") == "250 requests"
    assert fmt.quota_amount(3.2, "cost_usd") == "$3.20"


def test_times_for_people():
    now = timezone.now()
    assert fmt.from_now(now + timedelta(hours=3, seconds=5)) == "in 3 h"
    assert fmt.from_now((now + timedelta(minutes=12, seconds=5)).timestamp()) == "in 12 min"
    assert fmt.from_now(now + timedelta(days=3, minutes=1)) == "in 3 d"
    assert fmt.from_now(None) == "–"
    assert fmt.ago(now - timedelta(minutes=12, seconds=5)) == "12 min ago"
    assert fmt.ago(now - timedelta(hours=30)) == "30 h ago"
    assert fmt.ago(now) == "just now"
    assert fmt.ago(None) == "never"


def test_the_latest_fallbacks_and_the_top_reasons_are_one_read_each(django_assert_num_queries, monkeypatch):
    """On PostgreSQL each outcome's newest rows are read in one UNION ALL; the reasons count only the newest of each
    outcome that were read, and say when an outcome had more."""
    monkeypatch.setattr(selectors, "REASONS_READ_PER_OUTCOME", 3)
    now = timezone.now()
    for minutes in range(5):
        decision(Outcome.FALLBACK, now - timedelta(minutes=minutes + 1), primary_key=f"model-{minutes}")
    decision(Outcome.EXHAUSTED, now - timedelta(minutes=30))
    decision(Outcome.FAILED_FAST, now - timedelta(days=2))  # before the range; still among the latest
    union = connection.features.supports_slicing_ordering_in_compound

    with django_assert_num_queries(1 if union else len(NOT_PRIMARY) - 1):  # unroutable requests have their own panel
        reasons, capped = selectors.top_reasons(now - timedelta(hours=1), now)
    with django_assert_num_queries(1 if union else len(NOT_PRIMARY)):
        latest = selectors.latest_fallbacks()

    assert capped
    assert sorted((reason.outcome, reason.subject) for reason in reasons) == [
        ("exhausted", "gpt-4o"), ("fallback", "model-0"), ("fallback", "model-1"), ("fallback", "model-2")]
    assert [d.outcome for d in latest] == ["fallback"] * 5 + ["exhausted", "failed_fast"]
