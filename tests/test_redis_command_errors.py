"""A Redis command or script error is a bug, answered 500 with an error id and counted in /metrics; counting
never moves to the database for it. Only Redis out of reach (connection refused or lost, a timeout) does that."""

import logging
import time

import pytest
from rest_framework.test import APIClient

from router import ledger
from router.counters import redis_counters
from tests.calls import route
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route
from tests.test_health_and_metrics import samples

REDIS_ERRORS = ("switchboard_server_errors_total", (("kind", "redis"),))


@pytest.fixture
def quota(db, redis_client):
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai)
    make_route("general", [gpt4o])
    return QuotaFactory(provider=openai, name="requests", metric="requests", window="minute", limit=100, models=[gpt4o])


def test_a_script_error_is_a_500_with_an_error_id_in_the_log_and_a_metric_not_a_failover(api, quota, redis_client, caplog):
    route(api, category="general")
    before = samples(APIClient().get("/metrics")).get(REDIS_ERRORS, 0)
    key = redis_counters().quota_key(quota.id)
    redis_client.delete(key)
    redis_client.set(key, "not a hash")  # the script's HGET fails: WRONGTYPE
    api.raise_request_exception = False

    with caplog.at_level(logging.ERROR):
        response = api.post("/api/v1/route", {"category": "general"}, format="json")

    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error"
    assert any(body["error_id"] in record.getMessage() and "WRONGTYPE" in str(record.exc_info[1])
               for record in caplog.records if record.exc_info)
    redis_client.delete(key)
    assert samples(APIClient().get("/metrics"))[REDIS_ERRORS] == before + 1
    health = api.get("/api/v1/health").json()
    assert (health["redis"]["ok"], health["redis"]["counters"]) == (True, "redis")


def test_a_read_endpoint_meeting_a_script_error_answers_500_json_too(api, quota, redis_client):
    route(api, category="general")
    redis_client.delete(redis_counters().quota_key(quota.id))
    redis_client.set(redis_counters().quota_key(quota.id), "not a hash")
    api.raise_request_exception = False

    response = api.get("/api/v1/quotas")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json()["error_id"]


def test_after_the_bug_is_gone_decisions_count_on_redis_as_before(api, quota, redis_client):
    route(api, category="general")
    key = redis_counters().quota_key(quota.id)
    redis_client.delete(key)
    redis_client.set(key, "not a hash")
    api.raise_request_exception = False
    assert api.post("/api/v1/route", {"category": "general"}, format="json").status_code == 500

    redis_client.delete(key)
    route(api, category="general")

    assert redis_client.hget(key, "total") == b"1"


def test_a_drainer_whose_lock_expired_leaves_the_lock_another_drainer_took_since(api, quota, redis_client, monkeypatch):
    route(api, category="general")
    lock_name = f"{redis_counters().prefix}draining"
    monkeypatch.setattr(ledger, "LOCK_MILLISECONDS", 100)
    store = ledger.store

    def slow_store(entries):
        time.sleep(0.2)  # longer than the lock lives: another drainer takes the stream meanwhile
        assert redis_client.set(lock_name, "the-other-drainer", nx=True, px=60_000)
        return store(entries)

    monkeypatch.setattr(ledger, "store", slow_store)

    redis_counters().drain()

    assert redis_client.get(lock_name) == b"the-other-drainer"
