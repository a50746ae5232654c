"""The audit (/api/v1/decisions) holds every decision answered before it, or answers 503 saying it
cannot; health says when the ledger falls behind and when Redis would lose what it holds."""

import time
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from router import ledger
from router.counters import redis_counters
from tests.calls import audit, route
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route
from tests.redis_servers import RedisServer


@pytest.fixture
def policy(db):
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai, input_cost_per_mtok=Decimal("2.5"), output_cost_per_mtok=Decimal(10))
    QuotaFactory(provider=openai, name="tokens", metric="tokens", window="day", limit=100_000)
    make_route("general", [gpt4o])


def test_the_lock_of_a_drainer_that_died_frees_within_seconds_and_the_audit_then_holds_every_decision(
        api, policy, any_redis):
    answered = [route(api, category="general")["decision_id"] for _ in range(3)]
    # What a worker killed while draining leaves behind: its lock, which it can no longer renew.
    any_redis.set(f"{redis_counters().prefix}draining", "killed-worker", px=ledger.LOCK_MILLISECONDS)

    assert sorted(row["decision_id"] for row in audit(api)) == sorted(answered)


def test_the_audit_answers_503_when_another_drainer_holds_the_ledger_past_the_wait(api, policy, any_redis):
    route(api, category="general")
    any_redis.set(f"{redis_counters().prefix}draining", "a-drainer-that-keeps-renewing", px=60_000)

    response = api.get("/api/v1/decisions", {"format": "csv"})

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "ledger_incomplete"
    assert response["Retry-After"] == "5"


@pytest.mark.parametrize("on_failure", ["db", "refuse"])
def test_the_audit_answers_503_while_the_redis_holding_its_newest_rows_cannot_be_reached(
        api, policy, tmp_path, settings, on_failure):
    server = RedisServer(tmp_path).start()
    settings.REDIS_URL, settings.ROUTER_REDIS_DOWN = server.url, on_failure
    route(api, category="general")
    server.kill()

    response = api.get("/api/v1/decisions")

    assert response.status_code == 503
    assert response.json()["error"] == "ledger_incomplete"
    assert "Redis cannot be reached" in response.json()["detail"]


def test_health_degrades_when_rows_have_waited_in_redis_for_more_than_ten_seconds(api, policy, redis_client):
    eleven_seconds_ago = int(time.time() * 1000) - 11_000
    redis_client.xadd(redis_counters().stream_key, {"kind": "decision", "row": "{}"}, id=f"{eleven_seconds_ago}-0")

    health = api.get("/api/v1/health").json()

    assert health["redis"]["ledger_backlog"]["stale"] is True
    assert health["status"] == "degraded"


@pytest.mark.parametrize(("options", "persistence", "warned"), [
    (("--appendonly", "no"), "none", True),
    (("--save", "3600 1"), "snapshots", True),
    (("--appendonly", "yes"), "appendonly", False),
])
def test_health_says_how_redis_keeps_its_data_and_warns_unless_appendonly(
        db, tmp_path, settings, options, persistence, warned):
    server = RedisServer(tmp_path, *options).start()
    settings.REDIS_URL = server.url
    try:
        health = APIClient().get("/api/v1/health").json()
    finally:
        server.kill()

    assert health["redis"]["persistence"] == persistence
    assert any("appendonly" in warning for warning in health["warnings"]) is warned
