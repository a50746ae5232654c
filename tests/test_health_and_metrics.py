"""GET /api/v1/health (no auth) and GET /metrics (Prometheus text)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from providers.models import AvailabilityCheck
from router.models import Category
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_route


def samples(response) -> dict[tuple, float]:
    """Every sample of a Prometheus text answer, as {(name, sorted labels): value}."""
    text = b"".join(response.streaming_content if response.streaming else [response.content]).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }


def test_health_answers_without_auth_with_database_redis_broker_and_refresh_age(db):
    response = APIClient().get("/api/v1/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] in ("ok", "degraded")
    assert body["database"]["ok"] is True
    assert {"ok", "counters"} <= set(body["redis"])
    assert "ok" in body["broker"]
    assert body["availability_refresh"] == {"last_at": None, "age_seconds": None}


def test_health_reports_the_counters_in_use(db, counters):
    body = APIClient().get("/api/v1/health").json()

    if counters == "database":
        assert body["redis"] == {"configured": False, "ok": None, "counters": "database"}
    else:
        assert (body["redis"]["configured"], body["redis"]["ok"], body["redis"]["counters"]) == (True, True, "redis")


def test_health_reports_the_age_of_the_last_availability_refresh(db):
    provider = ProviderFactory(slug="openai")
    AvailabilityCheck.objects.create(provider=provider, started_at=datetime.now(tz=UTC) - timedelta(minutes=5))

    refresh = APIClient().get("/api/v1/health").json()["availability_refresh"]

    assert refresh["age_seconds"] == pytest.approx(300, abs=10)
    assert refresh["last_at"]


def test_metrics_are_prometheus_text_counting_decisions_by_outcome(api):
    model = LLMModelFactory(key="gpt-4o")
    make_route("general", [model])
    before = samples(APIClient().get("/metrics")).get(("switchboard_decisions_total", (("outcome", "primary"),)), 0)

    api.post("/api/v1/route", {"category": "general"}, format="json")
    response = APIClient().get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"switchboard_decisions_total" in response.content
    assert samples(response)[("switchboard_decisions_total", (("outcome", "primary"),))] == before + 1


def test_metrics_count_fallbacks_by_reason_and_show_quota_ratios(api, counters):
    openai = ProviderFactory(slug="openai")
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai)
    mini = LLMModelFactory(key="gpt-4o-mini", provider=openai)
    QuotaFactory(provider=openai, name="gpt-4o-rpm", metric="requests", window="minute", limit=Decimal(1), soft_limit_ratio=Decimal(1),
                 models=[gpt4o])
    make_route(CategoryFactory(slug="general", fallback=Category.Fallback.ALLOW), [gpt4o, mini])
    key = ("switchboard_fallbacks_total", (("reason", "quota"),))
    before = samples(APIClient().get("/metrics")).get(key, 0)

    api.post("/api/v1/route", {"category": "general"}, format="json")
    api.post("/api/v1/route", {"category": "general"}, format="json")
    metrics = samples(APIClient().get("/metrics"))

    assert metrics[key] == before + 1
    assert metrics[("switchboard_quota_ratio", (("provider", "openai"), ("quota", "gpt-4o-rpm")))] == 1.0


def test_a_dry_run_is_not_counted_in_the_metrics(api):
    make_route("general", [LLMModelFactory(key="gpt-4o")])
    key = ("switchboard_decisions_total", (("outcome", "primary"),))
    before = samples(APIClient().get("/metrics")).get(key, 0)

    api.post("/api/v1/route", {"category": "general", "dry_run": True}, format="json")

    assert samples(APIClient().get("/metrics")).get(key, 0) == before


@pytest.fixture
def redis_down_and_refusing(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.ROUTER_REDIS_DOWN = "refuse"


def test_health_says_down_when_redis_is_unreachable_and_the_router_refuses(db, redis_down_and_refusing):
    response = APIClient().get("/api/v1/health")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert (body["redis"]["ok"], body["redis"]["counters"]) == (False, "refusing")


def test_metrics_still_answer_when_redis_is_unreachable_and_the_router_refuses(api, redis_down_and_refusing):
    make_route("general", [LLMModelFactory(key="gpt-4o")])
    assert api.post("/api/v1/route", {"category": "general"}, format="json").status_code == 503

    response = APIClient().get("/metrics")

    assert response.status_code == 200
    assert b"switchboard_decisions_total" in response.content


def test_metrics_need_the_token_when_one_is_set(db, client, settings):
    settings.METRICS_TOKEN = "scrape-secret"

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    answer = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert answer.status_code == 200
    assert "switchboard_quota_ratio" in b"".join(answer.streaming_content if answer.streaming else [answer.content]).decode()
