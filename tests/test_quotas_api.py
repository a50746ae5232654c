"""GET /api/v1/quotas: every quota with its usage, when it frees up, and the burn-rate forecast."""

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from router.counters import flush_ledger, redis_counters
from router.models import Category, UsageEvent
from switchboard.vocabulary import ProviderKind
from tests.calls import report
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_api_key, make_route


def quotas(api) -> dict[str, dict]:
    response = api.get("/api/v1/quotas")
    assert response.status_code == 200, response.content
    return {row["name"]: row for row in response.json()["results"]}


def timestamp(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def event_at(at: datetime, model_key: str, input_tokens: int) -> None:
    UsageEvent.objects.create(created_at=at, model_key=model_key, provider_slug="openai", input_tokens=input_tokens)


def rebuild_counters() -> None:
    if settings.REDIS_URL:
        redis_counters().invalidate()


@pytest.fixture
def openai(db):
    return ProviderFactory(slug="openai", kind=ProviderKind.OPENAI)


@pytest.fixture
def gpt4o(openai):
    return LLMModelFactory(key="gpt-4o", provider=openai, input_cost_per_mtok=Decimal("2.5"), output_cost_per_mtok=Decimal("10"))


@pytest.fixture
def mini(openai):
    return LLMModelFactory(key="gpt-4o-mini", provider=openai)


def test_it_lists_every_quota_with_the_fields_of_the_design(api, openai, gpt4o):
    quota = QuotaFactory(provider=openai, name="gpt-4o-tpm", metric="tokens", window="minute", limit=Decimal(30000),
                         soft_limit_ratio=Decimal("0.9"), models=[gpt4o])

    response = api.get("/api/v1/quotas")

    assert set(response.json()) == {"count", "next", "previous", "results"}
    [row] = response.json()["results"]
    assert row == {
        "quota_id": quota.id, "provider": "openai", "name": "gpt-4o-tpm", "models": [{"key": "gpt-4o", "provider": "openai"}],
        "metric": "tokens", "window": "minute",
        "reset": "rolling", "limit": 30000, "soft_limit": 27000, "used": 0, "ratio": 0.0, "source": "manual", "frees_at": None,
        "forecast": {"soft_at": None, "hard_at": None, "burn_per_hour": 0},
    }


def test_it_shows_usage_ratio_when_it_frees_up_and_the_forecast(api, counters, openai, gpt4o):
    QuotaFactory(provider=openai, name="daily-tokens", metric="tokens", window="day", limit=Decimal(10_000))
    before = time.time()

    report(api, model="gpt-4o", input_tokens=600, output_tokens=400)
    flush_ledger()  # what the drain task does every second: the forecast reads the ledger's per-minute sums

    row = quotas(api)["daily-tokens"]
    assert (row["used"], row["ratio"]) == (1000, 0.1)
    # Rolling day in 24-minute buckets: the usage stops counting a day (and at most one bucket) later.
    assert before + 86400 <= timestamp(row["frees_at"]) <= time.time() + 86400 + 1440
    # 1,000 tokens in the last hour: 7,000 more to the soft limit (8,000) is 7 hours away, 9,000 to the limit 9 hours.
    assert row["forecast"]["burn_per_hour"] == 1000
    assert timestamp(row["forecast"]["soft_at"]) == pytest.approx(time.time() + 7 * 3600, abs=30)
    assert timestamp(row["forecast"]["hard_at"]) == pytest.approx(time.time() + 9 * 3600, abs=30)


def test_a_quota_past_its_soft_limit_forecasts_the_soft_limit_as_reached_now(api, counters, openai, gpt4o):
    QuotaFactory(provider=openai, name="daily-tokens", metric="tokens", window="day", limit=Decimal(1000))

    report(api, model="gpt-4o", input_tokens=850, output_tokens=0)
    flush_ledger()  # what the drain task does every second: the forecast reads the ledger's per-minute sums

    row = quotas(api)["daily-tokens"]
    assert row["ratio"] == 0.85
    assert timestamp(row["forecast"]["soft_at"]) == pytest.approx(time.time(), abs=30)
    assert timestamp(row["forecast"]["hard_at"]) > time.time() + 60


def test_a_provider_wide_quota_covers_every_model_of_the_provider(api, counters, openai, gpt4o, mini):
    QuotaFactory(provider=openai, name="all-tokens", metric="tokens", window="day", limit=Decimal(10_000))
    QuotaFactory(provider=openai, name="mini-pool", metric="tokens", window="day", limit=Decimal(10_000), models=[mini])
    other = ProviderFactory(slug="zhipu", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://glm.example.invalid/v4")
    LLMModelFactory(key="glm-4-5", provider=other)

    report(api, model="gpt-4o", input_tokens=100, output_tokens=0)
    flush_ledger()
    report(api, model="gpt-4o-mini", input_tokens=20, output_tokens=0)
    flush_ledger()
    report(api, model="glm-4-5", input_tokens=5000, output_tokens=0)
    flush_ledger()

    rows = quotas(api)
    assert (rows["all-tokens"]["models"], rows["all-tokens"]["used"]) == ([], 120)
    assert (rows["mini-pool"]["models"], rows["mini-pool"]["used"]) == ([{"key": "gpt-4o-mini", "provider": "openai"}], 20)


def test_requests_and_cost_quotas_are_shown_in_their_own_units(api, counters, openai, gpt4o):
    QuotaFactory(provider=openai, name="daily-requests", metric="requests", window="day", limit=Decimal(50))
    QuotaFactory(provider=openai, name="daily-dollars", metric="cost_usd", window="day", limit=Decimal("2.5"))

    report(api, model="gpt-4o", input_tokens=100_000, output_tokens=10_000)  # $0.25 + $0.10
    flush_ledger()  # what the drain task does every second

    rows = quotas(api)
    assert (rows["daily-requests"]["used"], rows["daily-requests"]["ratio"]) == (1, 0.02)
    assert (rows["daily-dollars"]["limit"], rows["daily-dollars"]["used"], rows["daily-dollars"]["ratio"]) == (2.5, 0.35, 0.14)


def start_of_day() -> datetime:
    return datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def test_a_calendar_day_quota_restarts_at_midnight_utc(api, counters, openai, gpt4o):
    QuotaFactory(provider=openai, name="calendar-day", metric="tokens", window="day", reset="calendar", limit=Decimal(10_000))
    QuotaFactory(provider=openai, name="rolling-day", metric="tokens", window="day", limit=Decimal(10_000))
    midnight = start_of_day()
    event_at(midnight - timedelta(minutes=1), "gpt-4o", 700)
    event_at(midnight, "gpt-4o", 30)
    rebuild_counters()

    rows = quotas(api)

    assert rows["calendar-day"]["used"] == 30
    assert rows["rolling-day"]["used"] == 730
    assert timestamp(rows["calendar-day"]["frees_at"]) == (midnight + timedelta(days=1)).timestamp()


def test_a_calendar_week_quota_restarts_on_monday(api, counters, openai, gpt4o):
    QuotaFactory(provider=openai, name="calendar-week", metric="tokens", window="week", reset="calendar", limit=Decimal(10_000))
    monday = start_of_day() - timedelta(days=start_of_day().weekday())
    event_at(monday - timedelta(minutes=1), "gpt-4o", 700)
    event_at(monday, "gpt-4o", 30)
    rebuild_counters()

    row = quotas(api)["calendar-week"]

    assert row["used"] == 30
    assert timestamp(row["frees_at"]) == (monday + timedelta(days=7)).timestamp()
    assert datetime.fromisoformat(row["frees_at"]).weekday() == 0


def test_a_calendar_quota_past_its_limit_refuses_until_midnight(api, counters, openai, gpt4o):
    QuotaFactory(provider=openai, name="calendar-day", metric="tokens", window="day", reset="calendar", limit=Decimal(1000))
    make_route(CategoryFactory(slug="security_auth_change", fallback=Category.Fallback.NEVER), [gpt4o])
    report(api, model="gpt-4o", input_tokens=900, output_tokens=0)
    flush_ledger()  # what the drain task does every second

    response = api.post("/api/v1/route", {"category": "security_auth_change"}, format="json")

    assert response.status_code == 429
    midnight = start_of_day() + timedelta(days=1)
    assert int(response["Retry-After"]) == pytest.approx(midnight.timestamp() - time.time(), abs=5)


def test_reading_quotas_needs_the_read_scope(db, gpt4o):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key(scopes=('route', 'usage'))}")

    response = client.get("/api/v1/quotas")

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


def test_quotas_answer_503_json_when_redis_is_unreachable_and_the_router_refuses(api, settings, openai, gpt4o):
    QuotaFactory(provider=openai, name="daily-tokens", metric="tokens", window="day", limit=Decimal(1000))
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.ROUTER_REDIS_DOWN = "refuse"

    response = api.get("/api/v1/quotas")

    assert response.status_code == 503
    assert response.json()["error"] == "counters_unavailable"
