"""Many deciders in several processes admit exactly what a quota has room for, never more (on the database, a
standalone Redis, a primary found through Sentinel and a Redis Cluster), and no more than the quota when Redis
stops in the middle of their burst."""

import time

import pytest
import redis

from router.counters import flush_ledger
from router.models import Decision
from tests.conftest import _required_in_ci
from tests.decider_processes import PROCESSES, run_deciders
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route
from tests.redis_servers import RedisServer


@pytest.fixture(params=["database", "standalone", "sentinel", "cluster"])
def counting_on(request, settings):
    """Runs the test on database counters, and on Redis counters on each topology of Redis."""
    if request.param == "database":
        settings.REDIS_URL = ""
    else:
        request.getfixturevalue({"standalone": "redis_client", "sentinel": "redis_on_sentinel", "cluster": "redis_on_cluster"}[request.param])
    return request.param


@pytest.fixture
def one_model_route(settings):
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") and settings.DATABASES["default"]["NAME"].startswith("file:"):
        _required_in_ci("a database that processes can share (an in-memory SQLite database cannot be; set DATABASE_URL)")
    provider = ProviderFactory(slug="bedrock", kind="bedrock", region="us-east-1")
    model = LLMModelFactory(key="bedrock-sonnet-4-5", provider=provider)
    make_route("general", [model], "any")
    return provider, model


@pytest.mark.django_db(transaction=True)
def test_it_admits_exactly_the_requests_a_quota_has_room_for(one_model_route, counting_on):
    provider, model = one_model_route
    QuotaFactory(provider=provider, metric="requests", window="minute", limit=25, soft_limit_ratio=1, models=[model])

    outcomes = run_deciders(count=15)

    assert outcomes.count("primary") == 25
    assert outcomes.count("exhausted") == PROCESSES * 15 - 25
    flush_ledger()
    assert Decision.objects.filter(outcome="primary").count() == 25


@pytest.mark.django_db(transaction=True)
def test_it_admits_exactly_the_tokens_a_quota_has_room_for(one_model_route, counting_on):
    provider, model = one_model_route
    QuotaFactory(provider=provider, metric="tokens", window="minute", limit=1000, soft_limit_ratio=1, models=[model])

    outcomes = run_deciders(count=15, estimate=90)

    assert outcomes.count("primary") == 11  # 11 x 90 = 990; a twelfth would make 1080
    flush_ledger()
    assert sum(Decision.objects.filter(outcome="primary").values_list("input_tokens", flat=True)) == 990


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("on_failure", "after_the_stop"), [("db", "exhausted"), ("refuse", "unavailable")])
def test_a_burst_admits_at_most_the_quota_when_redis_stops_in_the_middle(one_model_route, tmp_path, settings,
                                                                         on_failure, after_the_stop):
    """Redis accepted decisions it had not yet written to the database when it went: the database
    counters cannot see them, so they may not count as if the quota were untouched."""
    provider, model = one_model_route
    QuotaFactory(provider=provider, metric="requests", window="minute", limit=50, soft_limit_ratio=1, models=[model])
    server = RedisServer(tmp_path, "--appendonly", "yes", "--appendfsync", "always").start()
    settings.REDIS_URL, settings.ROUTER_REDIS_DOWN = server.url, on_failure

    def stop_redis_once_it_has_admitted_some() -> None:
        # Waits for Redis to hold a few accepted decisions in its ledger stream (not for a fixed time, which a
        # loaded machine may spend before any decider got in), then kills it in the middle of the burst.
        client = redis.Redis.from_url(server.url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(client.xlen(key) >= 5 for key in client.scan_iter(_type="STREAM")):
            time.sleep(0.002)
        server.kill()

    try:
        outcomes = run_deciders(count=100, pause=0.005, once_started=stop_redis_once_it_has_admitted_some)
        server.start()  # with everything it accepted (appendonly): the ledger gets its rows
        flush_ledger()
    finally:
        server.kill()

    assert 0 < outcomes.count("primary") <= 50
    assert outcomes.count(after_the_stop) > 0
    assert outcomes.count("primary") <= Decision.objects.filter(outcome="primary").count() <= 50
