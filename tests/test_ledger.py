"""The ledger on Redis: accepted decisions and usage reports wait in a Redis stream, counted, until
they are written to the database; writing is repeatable, and nothing accepted is lost when a Redis
that keeps its data (appendonly) restarts."""

import uuid
from decimal import Decimal
from functools import partial

import pytest
from django.db import transaction

from router import ledger
from router.counters import flush_ledger, redis_counters
from router.models import Decision, UsageEvent
from router.shapes import api_trace, as_json
from router.tasks import drain_ledger
from tests import calls
from tests.calls import quotas_used, route
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route
from tests.redis_servers import RedisServer


@pytest.fixture
def policy(db, redis_client):
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai, input_cost_per_mtok=Decimal("2.5"), output_cost_per_mtok=Decimal(10))
    QuotaFactory(provider=openai, name="tokens", metric="tokens", window="day", limit=100_000, soft_limit_ratio=1)
    make_route("general", [gpt4o])


report = partial(calls.report, model="gpt-4o", input_tokens=100, output_tokens=50)


def test_decisions_and_reports_wait_in_redis_counted_until_written(api, policy):
    decision = route(api, category="general", estimated_input_tokens=1000, estimated_output_tokens=500)
    reported = report(api, idempotency_key="call-1")

    assert not Decision.objects.exists() and not UsageEvent.objects.exists()
    assert redis_counters().backlog()["rows"] == 2
    assert drain_ledger() == 2

    stored = Decision.objects.get()
    assert (str(stored.id), stored.outcome, stored.model_key, stored.input_tokens, stored.output_tokens, stored.caller) == (
        decision["decision_id"], "primary", "gpt-4o", 1000, 500, "test-service")
    assert as_json(api_trace(stored.trace)) == decision["trace"] and stored.policy_version == decision["policy_version"]
    event = UsageEvent.objects.get()
    assert (str(event.id), event.idempotency_key, event.cost_usd) == (reported["usage_id"], "call-1", Decimal("0.00075"))
    assert redis_counters().backlog()["rows"] == 0
    assert quotas_used(api)["tokens"] == 1650


def test_a_report_naming_a_decision_still_in_redis_updates_it_when_written(api, policy):
    decision_id = route(api, category="general", estimated_input_tokens=1000)["decision_id"]

    report(api, decision_id=decision_id, input_tokens=300, output_tokens=20)
    flush_ledger()

    stored = Decision.objects.get(pk=decision_id)
    assert (stored.input_tokens, stored.output_tokens, stored.reported) == (300, 20, True)
    assert UsageEvent.objects.get().decision_id == stored.id
    assert quotas_used(api)["tokens"] == 320


def test_a_report_naming_a_decision_redis_no_longer_remembers_is_checked_in_the_database(api, policy, redis_client):
    decision_id = route(api, category="general", estimated_input_tokens=1000)["decision_id"]
    flush_ledger()
    redis_client.delete(redis_counters().decision_key(uuid.UUID(decision_id)))

    report(api, decision_id=decision_id, input_tokens=300, output_tokens=20)
    report(api, expect=409, decision_id=decision_id, input_tokens=1, output_tokens=1)

    flush_ledger()
    assert Decision.objects.get(pk=decision_id).reported
    assert quotas_used(api)["tokens"] == 320


@pytest.fixture(params=["store_in_postgresql", "store_with_orm"])
def write_batch(request):
    """Each way the ledger is written: by PostgreSQL from the rows' JSON, and through the ORM elsewhere."""
    if request.param == "store_in_postgresql":
        request.getfixturevalue("postgres_only")
    writer = getattr(ledger, request.param)

    def write(entries):
        with transaction.atomic():
            return writer(*ledger.split(entries))
    return write


def test_writing_the_same_batch_twice_stores_each_row_once(api, policy, redis_client, write_batch):
    """A drainer that dies after its commit and before removing the rows from Redis."""
    decision_id = route(api, category="general")["decision_id"]
    report(api, idempotency_key="k", decision_id=decision_id, input_tokens=7)
    entries = redis_client.xrange(redis_counters().stream_key)

    assert write_batch(entries) == []
    assert write_batch(entries) == []

    assert (Decision.objects.count(), UsageEvent.objects.count()) == (1, 1)
    assert Decision.objects.filter(pk=decision_id, reported=True, input_tokens=7).exists()
    assert UsageEvent.objects.get().decision_id == uuid.UUID(decision_id)


def test_a_batch_is_stored_as_it_was_accepted(api, policy, redis_client, write_batch):
    decision = route(api, category="general", estimated_input_tokens=1000, estimated_output_tokens=500)
    report(api, idempotency_key="call-1", status="rate_limited", retry_after=30,
           ratelimit_headers={"x-ratelimit-remaining-requests": "0"})
    entries = redis_client.xrange(redis_counters().stream_key)

    write_batch(entries)

    stored = Decision.objects.get()
    assert (str(stored.id), stored.caller, stored.category, stored.complexity, stored.outcome, stored.model_key,
            stored.provider_slug, stored.primary_key, as_json(api_trace(stored.trace)), stored.policy_version, stored.input_tokens,
            stored.output_tokens, stored.cost_usd, stored.reported) == (
        decision["decision_id"], "test-service", "general", "medium", "primary", "gpt-4o", "openai", "gpt-4o",
        decision["trace"], decision["policy_version"], 1000, 500, Decimal("0.0075"), False)
    event = UsageEvent.objects.get()
    assert (event.model_key, event.provider_slug, event.input_tokens, event.output_tokens, event.cost_usd, event.status,
            event.idempotency_key, event.retry_after, event.ratelimit_headers, event.decision_id) == (
        "gpt-4o", "openai", 100, 50, Decimal("0.00075"), "rate_limited", "call-1", 30,
        {"x-ratelimit-remaining-requests": "0"}, None)


def test_a_report_whose_decision_is_not_in_the_ledger_is_stored_without_it(api, policy, redis_client, write_batch, caplog):
    decision_id = route(api, category="general")["decision_id"]
    report(api, decision_id=decision_id)
    decision_entry, usage_entry = redis_client.xrange(redis_counters().stream_key)

    assert write_batch([usage_entry]) == []

    assert UsageEvent.objects.get().decision_id is None
    assert f"names decision {decision_id}, which is not in the ledger" in caplog.text


def test_a_repeated_key_is_returned_with_its_charges_to_take_back(api, policy, redis_client, write_batch):
    report(api, idempotency_key="call-1")
    first = redis_client.xrange(redis_counters().stream_key)
    redis_client.delete(redis_counters().idempotency_key("call-1"))
    report(api, idempotency_key="call-1")
    second = redis_client.xrange(redis_counters().stream_key)[1:]

    assert write_batch(first) == []
    duplicates = write_batch(second)

    assert [row["idempotency_key"] for row in duplicates] == ["call-1"]
    assert duplicates[0]["charges"]
    assert UsageEvent.objects.count() == 1


def test_a_key_repeated_after_redis_forgot_it_is_stored_once_and_its_count_taken_back(api, policy, redis_client):
    report(api, idempotency_key="call-1")
    flush_ledger()
    redis_client.delete(redis_counters().idempotency_key("call-1"))

    report(api, idempotency_key="call-1")
    flush_ledger()

    assert UsageEvent.objects.count() == 1
    assert quotas_used(api)["tokens"] == 150


def test_the_drain_task_leaves_the_rows_to_a_drainer_already_at_work(api, policy, redis_client):
    route(api, category="general")
    redis_client.set(f"{redis_counters().prefix}draining", "another-process")

    assert drain_ledger() == 0
    assert redis_counters().backlog()["rows"] == 1


def test_a_drain_writes_full_batches_and_leaves_what_arrives_after_a_short_one_to_the_next(api, policy, monkeypatch):
    monkeypatch.setattr(ledger, "BATCH_SIZE", 2)
    for _ in range(5):
        route(api, category="general")
    store, routed_meanwhile = ledger.store, []

    def store_while_a_service_routes(entries):
        if len(entries) < ledger.BATCH_SIZE and not routed_meanwhile:
            routed_meanwhile.append(route(api, category="general"))
        return store(entries)

    monkeypatch.setattr(ledger, "store", store_while_a_service_routes)

    assert drain_ledger() == 5
    assert Decision.objects.count() == 5
    assert redis_counters().backlog()["rows"] == 1
    assert drain_ledger() == 1


def test_health_reports_the_backlog(api, policy):
    route(api, category="general")

    backlog = api.get("/api/v1/health").json()["redis"]["ledger_backlog"]

    assert (backlog["rows"], backlog["stale"]) == (1, False)


def test_a_rebuild_writes_the_ledger_before_it_recounts(api, policy):
    route(api, category="general", estimated_input_tokens=1000)
    redis_counters().invalidate()

    assert route(api, category="general", estimated_input_tokens=1000)["outcome"] == "primary"

    assert Decision.objects.count() == 1  # the first; the second waits in Redis
    assert quotas_used(api)["tokens"] == 2000


@pytest.fixture
def persistent_redis(tmp_path, settings):
    """A Redis of this test's own that keeps its data (appendonly), restartable."""
    server = RedisServer(tmp_path, "--appendonly", "yes", "--appendfsync", "always").start()
    settings.REDIS_URL = server.url
    yield server.restart
    server.kill()


def test_nothing_accepted_is_lost_when_a_persistent_redis_restarts(api, policy, persistent_redis):
    decisions = [route(api, category="general", estimated_input_tokens=1000)["decision_id"] for _ in range(3)]
    report(api, decision_id=decisions[0], input_tokens=10, output_tokens=0)
    report(api, idempotency_key="call-1")

    persistent_redis()
    flush_ledger()

    assert sorted(str(pk) for pk in Decision.objects.values_list("id", flat=True)) == sorted(decisions)
    assert UsageEvent.objects.count() == 2
    assert Decision.objects.get(pk=decisions[0]).input_tokens == 10
    assert quotas_used(api)["tokens"] == 10 + 2000 + 150
    report(api, expect=200, idempotency_key="call-1")
