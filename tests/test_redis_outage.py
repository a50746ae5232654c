"""The consistency contract: counters are global; a Redis outage is reported and handled as
ROUTER_REDIS_DOWN says; what was accepted survives Redis losing everything."""

import time

import pytest

from router import counters
from router.counters import flush_ledger
from router.models import Decision, UsageEvent
from tests.calls import post, quotas_used, route
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route
from tests.redis_servers import RedisServer

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def four_per_minute(db):
    provider = ProviderFactory(slug="bedrock", kind="bedrock", region="us-east-1")
    sonnet = LLMModelFactory(key="bedrock-sonnet-4-5", provider=provider)
    fallback = LLMModelFactory(key="bedrock-sonnet-3-7", provider=provider)
    QuotaFactory(provider=provider, name="sonnet-4-5-requests", metric="requests", window="minute", limit=4,
                 soft_limit_ratio=1, models=[sonnet])
    make_route("bedrock_agent", [sonnet, fallback], "any")


def test_right_after_redis_is_lost_its_quotas_read_full_on_database_counters(api, four_per_minute, settings):
    """What Redis accepted and had not yet written to the database is unknown: the quota may be at its limit."""
    settings.REDIS_URL = UNREACHABLE_REDIS
    settings.ROUTER_REDIS_DOWN = "db"

    answers = [route(api, category="bedrock_agent") for _ in range(2)]

    assert [answer["model"]["key"] for answer in answers] == ["bedrock-sonnet-3-7"] * 2
    assert answers[0]["trace"][0]["cause"] == "quota"
    assert quotas_used(api)["sonnet-4-5-requests"] == 4


def test_once_the_moment_redis_was_lost_leaves_the_window_it_decides_on_database_counters(api, four_per_minute, settings):
    settings.REDIS_URL = UNREACHABLE_REDIS
    settings.ROUTER_REDIS_DOWN = "db"
    counters.outage.begin(lost_at=time.time() - 61)

    models = [route(api, category="bedrock_agent")["model"]["key"] for _ in range(5)]

    assert models == ["bedrock-sonnet-4-5"] * 4 + ["bedrock-sonnet-3-7"]
    health = api.get("/api/v1/health").json()
    assert health["status"] == "degraded"
    assert health["redis"] | {"down_since": None} == {
        "configured": True, "ok": False, "counters": "database", "on_failure": "db", "down_since": None,
    }


def test_it_refuses_when_redis_is_down_and_told_to(api, four_per_minute, settings):
    settings.REDIS_URL = UNREACHABLE_REDIS
    settings.ROUTER_REDIS_DOWN = "refuse"

    body = route(api, expect=503, category="bedrock_agent")

    assert body["error"] == "counters_unavailable"
    assert Decision.objects.count() == 0
    health = api.get("/api/v1/health")
    assert health.status_code == 503
    assert health.json()["redis"]["counters"] == "refusing"


def test_it_still_records_usage_reports_when_redis_is_down_and_refusing(api, four_per_minute, settings):
    settings.REDIS_URL = UNREACHABLE_REDIS
    settings.ROUTER_REDIS_DOWN = "refuse"

    response = api.post("/api/v1/usage", {"model": "bedrock-sonnet-4-5", "input_tokens": 10, "output_tokens": 5}, format="json")

    assert response.status_code == 201


def test_it_rebuilds_counters_from_the_database_when_redis_comes_back_empty(api, four_per_minute, redis_client, settings):
    for _ in range(3):
        assert route(api, category="bedrock_agent")["outcome"] == "primary"
    api.post("/api/v1/usage", {"model": "bedrock-sonnet-4-5", "input_tokens": 1, "output_tokens": 1}, format="json")
    flush_ledger()  # what the drain task does every second

    redis_client.delete(*redis_client.keys(settings.ROUTER_REDIS_PREFIX + "*"))  # what a Redis restart leaves

    assert quotas_used(api)["sonnet-4-5-requests"] == 4
    assert route(api, category="bedrock_agent")["outcome"] == "fallback"


class Clock:
    """A monotonic clock the test moves on."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_decisions_made_during_an_outage_are_counted_when_redis_is_back(api, four_per_minute, redis_client, settings, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(counters.outage, "clock", clock)
    redis_url = settings.REDIS_URL
    assert route(api, category="bedrock_agent")["outcome"] == "primary"

    settings.REDIS_URL = UNREACHABLE_REDIS
    counters.outage.begin(lost_at=time.time() - 61)
    for _ in range(2):
        assert route(api, category="bedrock_agent")["outcome"] == "primary"

    settings.REDIS_URL = redis_url
    clock.now += counters.RETRY_SECONDS - 0.01
    assert counters.current().name == "database"  # not yet tried again
    clock.now += 0.01
    assert route(api, category="bedrock_agent")["outcome"] == "primary"
    assert route(api, category="bedrock_agent")["outcome"] == "fallback"
    assert quotas_used(api)["sonnet-4-5-requests"] == 4
    assert api.get("/api/v1/health").json()["redis"]["ok"] is True


def test_a_connection_redis_closed_is_opened_again_without_counting_on_the_database(api, four_per_minute, tmp_path, settings):
    server = RedisServer(tmp_path, "--appendonly", "yes").start()
    settings.REDIS_URL, settings.ROUTER_REDIS_DOWN = server.url, "refuse"
    try:
        route(api, category="bedrock_agent")

        server.restart()  # which closes every connection to it
        answers = [post(api, "/api/v1/route", category="bedrock_agent").status_code for _ in range(3)]

        assert answers == [200, 200, 200]
        assert counters.outage.since is None
        assert quotas_used(api)["sonnet-4-5-requests"] == 4
    finally:
        server.kill()


@pytest.fixture
def redis_lost_after_a_decision(api, four_per_minute, tmp_path, settings) -> str:
    """A decision Redis accepted and had not yet written to the database when it went; returns its id."""
    server = RedisServer(tmp_path).start()
    settings.REDIS_URL, settings.ROUTER_REDIS_DOWN = server.url, "db"
    decision = route(api, category="bedrock_agent")["decision_id"]
    server.kill()
    return decision


def test_a_report_naming_a_decision_redis_holds_while_down_counts_on_its_model(api, redis_lost_after_a_decision):
    response = api.post("/api/v1/usage", {"decision_id": redis_lost_after_a_decision, "model": "bedrock-sonnet-4-5",
                                          "input_tokens": 10, "output_tokens": 5}, format="json")

    assert response.status_code == 201
    assert (response.json()["model"]["key"], response.json()["decision_id"]) == ("bedrock-sonnet-4-5", None)
    assert UsageEvent.objects.get().model_key == "bedrock-sonnet-4-5"


def test_a_report_naming_only_a_decision_redis_holds_while_down_is_refused_for_a_retry(api, redis_lost_after_a_decision):
    response = api.post("/api/v1/usage", {"decision_id": redis_lost_after_a_decision, "input_tokens": 10, "output_tokens": 5},
                        format="json")

    assert response.status_code == 503
    assert response.json()["error"] == "counters_unavailable"
    assert response["Retry-After"] == "5"
    assert not UsageEvent.objects.exists()
