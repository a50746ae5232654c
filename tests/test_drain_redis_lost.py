"""A drain that loses Redis between writing a batch to the database and taking it off the stream logs one warning and
returns; once Redis is back, the next drain writes what is left, and every row is in the ledger once."""

import contextlib
import logging
from decimal import Decimal
from functools import partial

import pytest
import redis
from django.db import connection

from router.counters import flush_ledger, redis_counters
from router.models import Decision, UsageEvent
from router.tasks import drain_ledger
from tests import calls
from tests.calls import quotas_used, route
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route
from tests.redis_servers import RedisServer

report = partial(calls.report, model="gpt-4o", input_tokens=100, output_tokens=50)


@pytest.fixture
def policy(db):
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai, input_cost_per_mtok=Decimal("2.5"), output_cost_per_mtok=Decimal(10))
    QuotaFactory(provider=openai, name="tokens", metric="tokens", window="day", limit=100_000, soft_limit_ratio=1)
    make_route("general", [gpt4o])


@pytest.fixture
def own_redis(tmp_path, settings):
    """A Redis of this test's own that keeps its data (appendonly) across a kill."""
    server = RedisServer(tmp_path, "--appendonly", "yes", "--appendfsync", "always").start()
    settings.REDIS_URL = server.url
    yield server
    server.kill()


@contextlib.contextmanager
def killed(server: RedisServer):
    """Redis stops at once (the drain's next command fails: ConnectionError), and starts again with what it held."""
    server.kill()
    yield
    server.start()


@contextlib.contextmanager
def paused(server: RedisServer):
    """Redis holds every write and script (CLIENT PAUSE WRITE: the drain's next one times out), then lets them go."""
    client = redis.Redis(port=server.port)
    client.client_pause(60_000, all=False)
    yield
    client.client_unpause()


@contextlib.contextmanager
def after_the_decisions_are_written(outage: contextlib.AbstractContextManager):
    """`outage` begins once the drain has inserted its batch's decisions into PostgreSQL (router.ledger's INSERT), and ends
    with the block."""
    with contextlib.ExitStack() as stack:
        def begin_outage(execute, sql, params, many, context):
            result = execute(sql, params, many, context)
            if sql.lstrip().startswith("INSERT INTO router_decision"):
                stack.enter_context(outage)
            return result

        with connection.execute_wrapper(begin_outage):
            yield


@pytest.mark.parametrize(("outage", "error"), [(killed, "ConnectionError"), (paused, "TimeoutError")])
def test_a_drain_that_loses_redis_logs_it_and_the_next_one_writes_each_row_once(postgres_only, api, policy, own_redis, caplog, outage,
                                                                               error):
    decisions = [route(api, category="general", estimated_input_tokens=1000, estimated_output_tokens=500)["decision_id"]
                 for _ in range(2)]
    reports = [report(api, decision_id=decisions[0])["usage_id"], report(api, idempotency_key="call-1")["usage_id"]]
    caplog.clear()

    with caplog.at_level(logging.WARNING), after_the_decisions_are_written(outage(own_redis)):
        assert drain_ledger() == 0

    assert [(record.name, record.levelname, record.getMessage()) for record in caplog.records] == [
        ("router.tasks", "WARNING", f"Ledger drain stopped: Redis cannot be reached ({error}); the next run drains what is left")]
    flush_ledger()
    assert sorted(str(pk) for pk in Decision.objects.values_list("id", flat=True)) == sorted(decisions)
    assert sorted(str(pk) for pk in UsageEvent.objects.values_list("id", flat=True)) == sorted(reports)
    assert Decision.objects.get(pk=decisions[0]).input_tokens == 100
    assert redis_counters().backlog()["rows"] == 0
    assert quotas_used(api)["tokens"] == 150 + 1500 + 150
