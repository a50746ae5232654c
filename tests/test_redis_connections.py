"""The counters' Redis connections are bounded and given back under every kind of server: a thread per request
(Django's development server) never runs the pool dry, and a pool that is busy for a moment answers 503 to retry,
never moving counting to the database. Only a Redis that cannot be reached does."""

import threading

import pytest

from router import counters
from tests.calls import quotas_used, route
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route


@pytest.fixture
def policy(db, redis_client, settings):
    settings.ROUTER_REDIS_MAX_CONNECTIONS = 4
    settings.ROUTER_REDIS_POOL_TIMEOUT = 0.5
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt = LLMModelFactory(key="gpt-4o", provider=openai)
    QuotaFactory(provider=openai, name="requests", metric="requests", window="day", limit=10_000, soft_limit_ratio=1)
    make_route("general", [gpt])


def in_a_thread_of_its_own(work) -> None:
    failures = []

    def run():
        try:
            work()
        except Exception as exc:  # noqa: BLE001 (reported by the test below)
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert failures == []


@pytest.mark.django_db(transaction=True)  # each request thread has its own database connection
def test_a_thread_per_request_server_counts_every_call_in_redis(api, policy):
    for _ in range(3 * 4 * 10):  # thirty times the pool's size, each in a new thread like runserver's
        in_a_thread_of_its_own(lambda: route(api, category="general"))

    assert counters.outage.since is None
    assert quotas_used(api)["requests"] == 120
    assert api.get("/api/v1/health").json()["redis"]["counters"] == "redis"


def test_a_busy_pool_answers_503_to_retry_and_counting_stays_in_redis(api, policy):
    pool = counters.redis_counters().client.connection_pool
    held = [pool.get_connection() for _ in range(4)]
    try:
        response = api.post("/api/v1/route", {"category": "general"}, format="json")
    finally:
        for connection in held:
            pool.release(connection)

    assert response.status_code == 503
    assert (response.json()["error"], response["Retry-After"]) == ("counters_busy", "1")
    assert counters.outage.since is None
    assert route(api, category="general")["outcome"] == "primary"
    assert quotas_used(api)["requests"] == 1
