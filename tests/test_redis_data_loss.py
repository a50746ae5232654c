"""Loss is said out loud: when Redis comes back without the data it held (a restart without persistence, a flush, another
server in its place), the next drain logs an ERROR naming the period whose answered rows may be lost, health and
/metrics say it, and the counters are rebuilt from the ledger. A Redis that keeps its data restarts without a word."""

import logging
import re
from datetime import datetime

import pytest
import redis
from django.utils import timezone

from providers.models import RedisMark
from router.counters import flush_ledger
from router.models import Decision
from router.tasks import drain_ledger
from tests.calls import quotas_used, route
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route
from tests.redis_servers import RedisServer


@pytest.fixture
def policy(db):
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai)
    QuotaFactory(provider=openai, name="requests", metric="requests", window="day", limit=1000, soft_limit_ratio=1)
    make_route("general", [gpt4o])


def own_redis(tmp_path, settings, *options: str) -> RedisServer:
    server = RedisServer(tmp_path, *options).start()
    settings.REDIS_URL = server.url
    return server


@pytest.fixture
def volatile_redis(tmp_path, settings):
    """A Redis of this test's own that keeps nothing across a restart (no appendonly, no snapshots)."""
    server = own_redis(tmp_path, settings, "--appendonly", "no")
    yield server
    server.kill()


def gauge(metrics: str, name: str) -> float:
    return float(re.search(rf"^{name} (\S+)$", metrics, re.M).group(1))


def answered(api, count: int) -> list[str]:
    return [route(api, category="general")["decision_id"] for _ in range(count)]


def drain_after_a_loss() -> None:
    """The drain task as beat runs it; the first call after a restart may meet the connection the restart cut."""
    for _ in range(3):
        try:
            drain_ledger()
            return
        except redis.ConnectionError:
            continue
    drain_ledger()


def test_a_restart_without_persistence_is_logged_with_the_period_that_may_be_lost(api, policy, volatile_redis, caplog):
    written = answered(api, 2)
    flush_ledger()
    before = timezone.now()
    lost = answered(api, 3)  # answered, still waiting in Redis for the database

    volatile_redis.restart()
    with caplog.at_level(logging.ERROR, logger="router.counters.marks"):
        drain_after_a_loss()

    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "router.counters.marks"]
    assert len(errors) == 1, caplog.text
    assert "Redis came back without the data it held (it holds no mark)" in errors[0].getMessage()
    mark = RedisMark.objects.get()
    assert mark.lost_from <= before <= mark.lost_until
    assert set(Decision.objects.values_list("id", flat=True)).isdisjoint(lost) and Decision.objects.count() == len(written)

    health = api.get("/api/v1/health").json()
    period = health["redis"]["data_lost"]
    assert datetime.fromisoformat(period["from"]) == mark.lost_from and datetime.fromisoformat(period["until"]) == mark.lost_until
    assert any(period["from"] in warning and "may be lost" in warning for warning in health["warnings"])
    metrics = api.get("/metrics").content.decode()
    assert gauge(metrics, "switchboard_redis_data_lost_from_timestamp_seconds") == pytest.approx(mark.lost_from.timestamp())
    assert gauge(metrics, "switchboard_redis_data_lost_until_timestamp_seconds") == pytest.approx(mark.lost_until.timestamp())

    # Counted from the ledger again: the two written decisions, and the one made now.
    route(api, category="general")
    assert quotas_used(api)["requests"] == 3


def test_a_flushed_redis_is_noticed_once(api, policy, volatile_redis, caplog):
    answered(api, 1)
    flush_ledger()
    answered(api, 1)

    redis.Redis(port=volatile_redis.port).flushall()
    with caplog.at_level(logging.ERROR, logger="router.counters.marks"):
        drain_ledger()
        drain_ledger()

    assert sum(1 for r in caplog.records if r.name == "router.counters.marks" and r.levelno == logging.ERROR) == 1
    assert RedisMark.objects.get().lost_until is not None


def test_another_redis_in_its_place_is_noticed(api, policy, volatile_redis, tmp_path, settings, caplog):
    answered(api, 1)
    flush_ledger()
    (tmp_path / "replacement").mkdir()
    replacement = own_redis(tmp_path / "replacement", settings, "--appendonly", "no")
    try:
        with caplog.at_level(logging.ERROR, logger="router.counters.marks"):
            drain_ledger()
        assert "may be lost" in caplog.text
        assert api.get("/api/v1/health").json()["redis"]["data_lost"] is not None
    finally:
        replacement.kill()


def test_a_redis_that_keeps_its_data_restarts_without_a_word(api, policy, tmp_path, settings, caplog):
    server = own_redis(tmp_path, settings, "--appendonly", "yes", "--appendfsync", "always")
    try:
        answered(api, 2)
        flush_ledger()
        answered(api, 2)
        server.restart()
        with caplog.at_level(logging.ERROR, logger="router.counters.marks"):
            drain_after_a_loss()
        assert not [r for r in caplog.records if r.name == "router.counters.marks"], caplog.text
        assert Decision.objects.count() == 4
        health = api.get("/api/v1/health").json()
        assert health["redis"]["data_lost"] is None
        assert gauge(api.get("/metrics").content.decode(), "switchboard_redis_data_lost_until_timestamp_seconds") == 0
    finally:
        server.kill()


def test_the_overview_says_which_period_may_be_lost(api, admin_client, policy, volatile_redis):
    answered(api, 1)
    flush_ledger()
    answered(api, 1)
    redis.Redis(port=volatile_redis.port).flushall()
    drain_ledger()

    page = admin_client.get("/").content.decode()

    loss = page[page.index('id="redis-loss"'):page.index("</p>", page.index('id="redis-loss"'))]
    assert "Redis came back without the data it held" in loss
    mark = RedisMark.objects.get()
    assert mark.lost_until.strftime("%Y-%m-%dT%H:%M") in loss
