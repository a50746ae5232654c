"""What each alert condition fires for, and when it resolves, read at an injected moment: a quota forecast to reach
its hard limit, the refusal share over 5 minutes, a model cooling down, a provider's refresh failing, the ledger's
backlog and Redis lost."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from alerts.evaluate import evaluate
from alerts.models import Alert, AlertRule
from providers.models import AvailabilityCheck
from router.counters import flush_ledger
from router.models import UsageEvent
from switchboard.vocabulary import Metric, Window
from tests.calls import report, route
from tests.factories import DecisionFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_route

pytestmark = pytest.mark.django_db


def firing() -> dict[str, str]:
    """Each open alert's subject and summary, by subject."""
    return {alert.subject: alert.summary for alert in Alert.objects.filter(resolved_at=None)}


@pytest.fixture
def database_counters(settings):
    settings.REDIS_URL = ""


def test_a_quota_whose_last_hour_reaches_its_hard_limit_within_the_rules_minutes_fires(database_counters):
    AlertRule.objects.create(slug="soon", condition="quota_forecast", within_minutes=30)
    openai = ProviderFactory(slug="openai", kind="openai")
    LLMModelFactory(key="gpt-4o", provider=openai)
    QuotaFactory(provider=openai, name="tokens-day", metric=Metric.TOKENS, window=Window.DAY, limit=Decimal(1_000_000))
    now = timezone.now()
    # 600,000 tokens in the last hour: 400,000 left, 40 minutes away at that rate.
    UsageEvent.objects.create(created_at=now - timedelta(minutes=20), model_key="gpt-4o", provider_slug="openai", input_tokens=600_000)

    evaluate(now)
    assert firing() == {}

    UsageEvent.objects.create(created_at=now - timedelta(minutes=5), model_key="gpt-4o", provider_slug="openai", input_tokens=150_000)
    evaluate(now + timedelta(seconds=30))
    [(subject, summary)] = firing().items()
    assert subject == "openai/tokens-day"
    assert "reaches its hard limit at" in summary and "it is at 75% now" in summary


@pytest.mark.parametrize(("category", "expected"), [("", {"all requests"}), ("general", {"category general"}), ("batch", set())])
def test_refusals_above_the_share_over_five_minutes_fire_overall_or_for_a_category(database_counters, category, expected):
    from router.models import Category

    Category.objects.create(slug="batch")
    AlertRule.objects.create(slug="refusals", condition="refusal_share", percent=Decimal(4), category=category, min_decisions=10)
    now = timezone.now()
    DecisionFactory.create_batch(9, created_at=now - timedelta(minutes=2))
    DecisionFactory.create_batch(10, created_at=now - timedelta(minutes=2), category="batch")
    DecisionFactory.create(created_at=now - timedelta(minutes=1), outcome="exhausted", model_key="")
    DecisionFactory.create_batch(5, created_at=now - timedelta(minutes=7), outcome="exhausted", model_key="")  # older than 5 minutes

    evaluate(now)

    assert set(firing()) == expected
    if expected == {"category general"}:
        assert firing()["category general"].startswith("10% of routing requests of category general were refused over the last "
                                                      "5 minutes (1 of 10; alert above 4 %)")
    evaluate(now + timedelta(seconds=30))
    assert set(firing()) == expected
    evaluate(now + timedelta(minutes=5))
    assert firing() == {}


def test_too_few_requests_never_alert(database_counters):
    AlertRule.objects.create(slug="refusals", condition="refusal_share", percent=Decimal(5))
    DecisionFactory.create_batch(3, outcome="exhausted", model_key="")
    evaluate(timezone.now())
    assert firing() == {}


def test_a_model_cooling_down_after_reported_failures_fires_until_its_cooldown_ends(database_counters, api):
    AlertRule.objects.create(slug="models-out", condition="model_out")
    openai = ProviderFactory(slug="openai", kind="openai", cooldown_seconds=60)
    make_route("general", [LLMModelFactory(key="gpt-4o", provider=openai)])
    for _ in range(3):
        decision = route(api, category="general")
        report(api, decision_id=decision["decision_id"], status="rate_limited", input_tokens=0, output_tokens=0)
    now = timezone.now()

    evaluate(now)
    assert firing()["model gpt-4o"].startswith("Model gpt-4o is cooling down until ")

    evaluate(now + timedelta(seconds=61))
    assert firing() == {}
    assert Alert.objects.get().resolved_at == now + timedelta(seconds=61)


def test_a_refresh_failing_for_the_rules_minutes_fires_for_configured_providers_only(database_counters, monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_API_KEY", "sk-test")
    AlertRule.objects.create(slug="refresh", condition="refresh_failing", for_minutes=30)
    openai = ProviderFactory(slug="openai", kind="openai", credential_env="TEST_OPENAI_API_KEY")
    quiet = ProviderFactory(slug="zhipu", kind="openai_compatible", base_url="https://glm.example.com/v4")
    now = timezone.now()
    for provider in (openai, quiet):
        AvailabilityCheck.objects.create(provider=provider, started_at=now - timedelta(minutes=50), ok=True)
        for minutes in (25, 15):
            AvailabilityCheck.objects.create(provider=provider, started_at=now - timedelta(minutes=minutes), ok=False, error="timed out")

    evaluate(now)
    assert firing() == {}

    evaluate(now + timedelta(minutes=5))
    assert list(firing()) == ["provider openai"]
    assert "timed out" in firing()["provider openai"]

    AvailabilityCheck.objects.create(provider=openai, started_at=now + timedelta(minutes=6), ok=True)
    evaluate(now + timedelta(minutes=7))
    assert firing() == {}


def test_rows_waiting_in_redis_longer_than_the_rules_seconds_fire_until_the_drain_writes_them(redis_client, api):
    AlertRule.objects.create(slug="backlog", condition="ledger_backlog", seconds=60, severity="critical")
    make_route("general", [LLMModelFactory(key="gpt-4o")])
    route(api, category="general")
    now = timezone.now()

    evaluate(now + timedelta(seconds=30))
    assert firing() == {}
    evaluate(now + timedelta(seconds=90))
    assert firing()["ledger"].startswith("1 accepted decisions and reports have waited in Redis")

    flush_ledger()
    evaluate(now + timedelta(seconds=120))
    assert firing() == {}


def test_redis_out_of_reach_fires_as_counting_on_the_database(settings):
    AlertRule.objects.create(slug="redis", condition="counting_on_database", severity="critical")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    evaluate(timezone.now())

    assert firing()["redis"].startswith("Redis cannot be reached (ConnectionError): decisions are counted on the database")


def test_counting_on_the_database_by_configuration_is_no_alert(database_counters):
    AlertRule.objects.create(slug="redis", condition="counting_on_database")
    evaluate(timezone.now())
    assert firing() == {}
