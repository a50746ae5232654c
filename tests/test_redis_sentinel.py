"""With REDIS_SENTINELS the counters find the Redis primary through Sentinel and follow it across a failover,
with no restart: a primary killed, its replica promoted, and decisions counted on the new primary."""

import pytest
import redis

from router import counters
from tests.calls import post, quotas_used, route
from tests.redis_servers import SentinelGroup, wait_until


@pytest.fixture
def sentinel_redis(tmp_path, settings):
    """A primary, its replica and three Sentinels of this test's own; the settings point the counters at them."""
    group = SentinelGroup(tmp_path).start()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # its host is never used: Sentinel names the primary
    settings.REDIS_SENTINELS, settings.REDIS_SENTINEL_MASTER = group.addresses, group.master
    yield group.primary, group.replica, group.sentinels
    group.kill()


def test_the_counters_follow_the_primary_across_a_failover(api, general_with_requests_quota, sentinel_redis, monkeypatch):
    primary, replica, sentinels = sentinel_redis
    clock = [0.0]
    monkeypatch.setattr(counters.outage, "clock", lambda: clock[0])

    before = [route(api, category="general") for _ in range(3)]
    assert api.get("/api/v1/health").json()["redis"]["counters"] == "redis"
    assert redis.Redis(port=primary.port).wait(1, 5000) == 1  # the replica has all of it

    primary.kill()
    wait_until(lambda: all(sentinel.primary_port() == replica.port for sentinel in sentinels), 30, "Sentinel to promote the replica")
    # The first call may reach the new primary at once, or meet the dead connection (or a Sentinel still settling) and
    # count on the database meanwhile, where a quota whose window holds the loss reads as full: a refusal, never an overshoot.
    during = post(api, "/api/v1/route", category="general")
    clock[0] += counters.RETRY_SECONDS + 1  # the outage's wait before Redis is tried again
    after = [route(api, category="general") for _ in range(3)]

    assert all(answer["outcome"] == "primary" for answer in [*before, *after])
    assert during.status_code in (200, 429)
    assert api.get("/api/v1/health").json()["redis"]["counters"] == "redis"
    assert quotas_used(api)["requests-minute"] == 6 + (during.status_code == 200)
    new_primary = redis.Redis(port=replica.port)
    assert new_primary.role()[0] == b"master" and any(new_primary.scan_iter(match="*", count=1000))
