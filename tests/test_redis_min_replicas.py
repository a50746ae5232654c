"""With REDIS_MIN_REPLICAS a decision or report is answered with success only once that many replicas hold it: a
replica that does not acknowledge in time gets 503 counters_unavailable with Retry-After, and a primary killed in
the middle of a burst loses no answered decision to the failover."""

import time
from datetime import UTC, datetime

import pytest
import redis

from router.counters import flush_ledger
from router.models import Decision
from tests.calls import post, quotas_used, route
from tests.decider_processes import run_deciders
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route
from tests.redis_servers import RedisServer, SentinelGroup, wait_until


def policy(limit: int) -> None:
    provider = ProviderFactory(slug="openai", kind="openai")
    model = LLMModelFactory(key="gpt-4o", provider=provider)
    QuotaFactory(provider=provider, name="requests-minute", metric="requests", window="minute", limit=limit, soft_limit_ratio=1,
                 models=[model])
    make_route("general", [model], "any")


@pytest.fixture
def primary_and_replica(tmp_path):
    primary = RedisServer(tmp_path, "--dbfilename", "primary.rdb").start()
    replica = RedisServer(tmp_path, "--dbfilename", "replica.rdb", "--replicaof", "127.0.0.1", str(primary.port)).start()
    client = redis.Redis(port=primary.port)
    wait_until(lambda: client.set("written", 1) and client.wait(1, 100) == 1, 30, "the replica to acknowledge a write")
    yield primary, replica
    replica.kill()
    primary.kill()


def test_a_count_no_replica_acknowledged_in_time_is_answered_503_never_a_success(api, db, primary_and_replica, settings):
    primary, replica = primary_and_replica
    policy(limit=1000)
    settings.REDIS_URL, settings.REDIS_MIN_REPLICAS, settings.REDIS_MIN_REPLICAS_TIMEOUT_MS = primary.url, 1, 500
    answered = route(api, category="general")
    assert post(api, "/api/v1/usage", decision_id=answered["decision_id"], input_tokens=10, output_tokens=5).status_code == 201

    replica.kill()
    decision = post(api, "/api/v1/route", category="general")
    usage = post(api, "/api/v1/usage", model="gpt-4o", input_tokens=10, output_tokens=5)

    for response in (decision, usage):
        assert response.status_code == 503
        assert response.json()["error"] == "counters_unavailable"
        assert "0 of the 1 Redis replicas" in response.json()["detail"]
        assert response["Retry-After"] == "1"
    assert api.get("/api/v1/health").json()["redis"]["counters"] == "redis"
    flush_ledger()
    assert Decision.objects.filter(id=answered["decision_id"], reported=True).exists()


@pytest.mark.django_db(transaction=True)
def test_a_primary_killed_in_the_middle_of_a_burst_loses_no_answered_decision(tmp_path, settings, postgres_only, api):
    """Four processes decide on a 50-per-minute quota while the primary is killed -9 and Sentinel promotes one of its
    two replicas (the other then follows it, so the new primary has the replica it needs): at most 50 are admitted
    across the failover, each one admitted before and after it is in the ledger once drained, and the counters
    equal the ledger."""
    policy(limit=50)
    group = SentinelGroup(tmp_path, replicas=2).start()
    killed_at = []
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.REDIS_SENTINELS, settings.REDIS_SENTINEL_MASTER = group.addresses, group.master
    settings.REDIS_MIN_REPLICAS, settings.REDIS_MIN_REPLICAS_TIMEOUT_MS = 1, 500

    def kill_the_primary_once_it_has_admitted_some() -> None:
        client = redis.Redis(port=group.primary.port)
        wait_until(lambda: any(client.xlen(key) >= 5 for key in client.scan_iter(_type="STREAM")), 30, "a few admitted decisions")
        group.primary.kill()
        killed_at.append(time.time())

    admitted: list[str] = []
    try:
        # Paced so that the burst outlasts the failover: 20 a second fill the quota in 2.5 s, and the last run 10 s on.
        outcomes = run_deciders(count=50, pause=0.2, once_started=kill_the_primary_once_it_has_admitted_some, admitted=admitted)
        promoted = {replica.port for replica in group.replicas}
        wait_until(lambda: all(sentinel.primary_port() in promoted for sentinel in group.sentinels), 30, "Sentinel to promote a replica")
        flush_ledger()
        stored = dict(Decision.objects.filter(outcome="primary").values_list("id", "created_at"))
        used = quotas_used(api)["requests-minute"]
    finally:
        group.kill()

    assert 5 <= len(admitted) <= 50
    assert outcomes.count("primary") == len(admitted)
    assert {str(decision_id) for decision_id in stored} >= set(admitted)
    assert len(stored) <= 50
    assert used == len(stored)
    assert any(created_at > datetime.fromtimestamp(killed_at[0], UTC) for created_at in stored.values()), "none admitted after"
