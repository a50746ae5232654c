"""The partitioned ledger on PostgreSQL: the migration moves a ledger holding rows into partitions, the
worker creates partitions ahead, and retention drops whole days past their age while the per-minute
and per-hour sums keep what the dropped rows added."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from router import partitions
from router.models import Decision, LedgerHour, UsageEvent
from router.retention import Retention, prune
from router.tasks import create_ledger_partitions
from tests.factories import DecisionFactory, UsageEventFactory

BEFORE = [("router", "0016_decision_requests")]
AFTER = [("router", "0017_partitioned_ledger")]
NOW = timezone.now()


def days_ago(days: float):
    return NOW - timedelta(days=days)


def hourly_sums() -> dict[tuple, tuple]:
    return {(row.hour, row.outcome, row.model_key): (row.entries, row.input_tokens, row.output_tokens, row.cost_usd)
            for row in LedgerHour.objects.all() if row.entries}


def partition_of(table: str, row_id) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE id = %s", [row_id])
        return cursor.fetchone()[0]


def migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_a_ledger_holding_rows_into_partitions_and_keeps_its_sums(postgres_only):
    migrate(BEFORE)
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'router_decision'")
        assert cursor.fetchone() == ("r",)
    stored = {}
    for outcome, age in (("primary", 45), ("primary", 2), ("fallback", 45), ("exhausted", 2)):
        stored[outcome, age] = DecisionFactory(outcome=outcome, created_at=days_ago(age), caller=f"{outcome}-{age}")
    report = UsageEventFactory(created_at=days_ago(45) + timedelta(minutes=1), decision=stored["primary", 45], idempotency_key="call-1")
    alone = UsageEventFactory(created_at=days_ago(2), input_tokens=30, output_tokens=20, cost_usd=Decimal("0.25"))
    sums = hourly_sums()

    migrate(AFTER)

    assert partitions.is_partitioned()
    assert sorted(Decision.objects.values_list("caller", flat=True)) == ["exhausted-2", "fallback-45", "primary-2", "primary-45"]
    assert hourly_sums() == sums
    day = days_ago(45).date()
    assert partition_of("router_decision", stored["primary", 45].id) == f"router_decision_primary_{day:%Y%m%d}"
    assert partition_of("router_decision", stored["fallback", 45].id) == f"router_decision_audit_{day:%Y%m}"
    assert partition_of("router_usageevent", report.id) == f"router_usageevent_{report.created_at:%Y%m%d}"
    assert UsageEvent.objects.get(pk=report.id).decision_id == stored["primary", 45].id
    assert Decision.objects.get(pk=stored["exhausted", 2].id).caller == "exhausted-2"
    ahead = (NOW + timedelta(days=partitions.AHEAD_DAYS)).date()
    assert f"router_usageevent_{ahead:%Y%m%d}" in partitions.partitions(partitions.USAGE)

    # The triggers keep the sums of what is written after the migration.
    DecisionFactory(outcome="primary", created_at=days_ago(2), input_tokens=1000)
    assert hourly_sums() != sums
    UsageEvent.objects.filter(pk=alone.pk).delete()
    assert not any(outcome == "reported" for _, outcome, _ in hourly_sums())


@pytest.fixture
def partitioned(db, postgres_only):
    """Partitions for the days from 40 days ago, as a ledger migrated 40 days ago holds them."""
    partitions.create_ahead(now=days_ago(40), days=45)


def test_pruning_drops_the_days_past_their_age_and_takes_nothing_from_the_sums(partitioned):
    for outcome in ("primary", "fallback", "exhausted"):
        for age in (35, 10):
            DecisionFactory(outcome=outcome, created_at=days_ago(age), caller=f"{outcome}-{age}")
    UsageEventFactory(created_at=days_ago(35), caller="report-35")
    UsageEventFactory(created_at=days_ago(10), caller="report-10")
    sums = hourly_sums()

    pruned = prune(Retention(primary_days=30, audit_days=400), now=NOW)

    dropped = {dropped.name for dropped in pruned.dropped}
    assert f"router_decision_primary_{days_ago(35):%Y%m%d}" in dropped
    assert f"router_usageevent_{days_ago(35):%Y%m%d}" in dropped
    assert f"router_decision_primary_{days_ago(30):%Y%m%d}" not in dropped  # the day of the cutoff is kept whole
    assert not any(name.startswith("router_decision_audit") for name in dropped)
    assert sorted(Decision.objects.values_list("caller", flat=True)) == [
        "exhausted-10", "exhausted-35", "fallback-10", "fallback-35", "primary-10"]
    assert list(UsageEvent.objects.values_list("caller", flat=True)) == ["report-10"]
    assert (pruned.decisions, pruned.usage_events) == (0, 0)  # no row deleted one by one
    assert hourly_sums() == sums


def test_rows_in_a_default_partition_are_pruned_by_batches(partitioned):
    DecisionFactory(outcome="primary", created_at=days_ago(60), caller="before-the-partitions")
    UsageEventFactory(created_at=days_ago(60), caller="report-before-the-partitions")
    sums = hourly_sums()

    pruned = prune(Retention(primary_days=30, audit_days=400), now=NOW)

    assert (pruned.decisions, pruned.usage_events) == (1, 1)
    assert not Decision.objects.exists() and not UsageEvent.objects.exists()
    assert hourly_sums() == sums


def test_prune_ledger_names_the_partitions_it_dropped(partitioned, capsys):
    DecisionFactory(outcome="primary", created_at=days_ago(35))

    call_command("prune_ledger", "--primary-days", "30")

    output = capsys.readouterr().out
    assert f"router_decision_primary_{days_ago(35):%Y%m%d}" in output
    assert "Deleted 0 decisions and 0 usage reports" in output


def test_the_worker_creates_the_days_ahead_and_a_row_beyond_them_is_still_stored(db, postgres_only):
    far = (NOW + timedelta(days=partitions.AHEAD_DAYS + 20)).date()
    assert f"router_usageevent_{far:%Y%m%d}" not in partitions.partitions(partitions.USAGE)

    decision = DecisionFactory(created_at=NOW + timedelta(days=partitions.AHEAD_DAYS + 20))
    assert partition_of("router_decision", decision.id) == "router_decision_primary_default"

    created = partitions.create_ahead(now=NOW + timedelta(days=10))
    assert f"router_usageevent_{(NOW + timedelta(days=10 + partitions.AHEAD_DAYS)).date():%Y%m%d}" in created
    assert create_ledger_partitions() == []  # today's and the next week's exist already
    assert PeriodicTask.objects.get(name="Create the ledger's partitions").task == "router.tasks.create_ledger_partitions"


def test_a_ledger_that_is_not_partitioned_has_no_partitions_to_create(db):
    if connection.vendor == "postgresql":
        pytest.skip("SQLite's ledger is not partitioned")
    assert create_ledger_partitions() == []
    assert not partitions.is_partitioned()
