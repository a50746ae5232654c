"""Counters belong to one installation: a database recreated next to an old Redis, or another
installation sharing it, never reads, counts or drains the state of the other."""

import logging
from decimal import Decimal

import pytest

from router import counters
from router.models import Decision, Installation
from router.tasks import drain_ledger
from tests.calls import quotas_used, route
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route


@pytest.fixture
def policy(db, any_redis):
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai, input_cost_per_mtok=Decimal("2.5"), output_cost_per_mtok=Decimal(10))
    QuotaFactory(provider=openai, name="tokens", metric="tokens", window="day", limit=100_000)
    make_route("general", [gpt4o])


def recreate_the_database_identity() -> None:
    """What a fresh database next to the old Redis is: another installation id (the ledger is empty here too)."""
    Installation.objects.all().delete()
    counters.forget_installation()


def test_a_fresh_database_next_to_an_old_redis_neither_sees_nor_drains_the_old_counts(api, policy, any_redis, caplog):
    old = counters.installation_id()
    drain_ledger()  # the old installation's worker, alive a moment ago
    for _ in range(3):
        route(api, category="general", estimated_input_tokens=1000, estimated_output_tokens=0)
    old_stream = counters.redis_counters().stream_key

    recreate_the_database_identity()
    assert counters.installation_id() != old

    assert quotas_used(api) == {"tokens": 0}
    route(api, category="general", estimated_input_tokens=10, estimated_output_tokens=0)
    with caplog.at_level(logging.WARNING, logger="router.counters.redis"):
        assert drain_ledger() == 1
    assert Decision.objects.count() == 1
    assert quotas_used(api) == {"tokens": 10}
    assert any_redis.xlen(old_stream) == 3
    assert old in caplog.text


def test_health_names_the_other_installations_on_its_redis(api, policy):
    old = counters.installation_id()
    drain_ledger()

    recreate_the_database_identity()
    drain_ledger()
    health = api.get("/api/v1/health").json()

    assert health["redis"]["installation"] == counters.installation_id()
    assert [other["installation_id"] for other in health["redis"]["other_installations"]] == [old]
    assert any("Other installations" in warning for warning in health["warnings"])
