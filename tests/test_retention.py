"""Retention: the ledger's old rows are pruned by age, in batches, and the per-minute and per-hour
sums keep what they held; bad ages are refused and change nothing."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from router.counters.database import DatabaseCounters
from router.models import Decision, LedgerHour, LedgerMinute, UsageEvent
from router.retention import Retention, prune
from router.snapshot import current_snapshot
from router.tasks import prune_ledger
from tests.factories import DecisionFactory, LLMModelFactory, ProviderFactory, QuotaFactory, UsageEventFactory

ROOT = Path(__file__).resolve().parent.parent
NOW = timezone.now()


def days_ago(days: float):
    return NOW - timedelta(days=days)


def sums(model, period: str) -> dict[tuple, tuple]:
    return {(getattr(row, period), row.outcome, row.model_key): (row.entries, row.input_tokens, row.output_tokens)
            for row in model.objects.all() if row.entries}


@pytest.fixture
def ledger(db):
    """Each outcome at 10, 31 and 440 days; usage reports alone at 10 and 31 days, and one naming an old primary.

    440 days: a partitioned ledger keeps the audit's decisions for whole months past their age."""
    for outcome in ("primary", "fallback", "exhausted"):
        for age in (10, 31, 440):
            DecisionFactory(outcome=outcome, created_at=days_ago(age), caller=f"{outcome}-{age}")
    for age in (10, 31):
        UsageEventFactory(created_at=days_ago(age), caller=f"report-{age}")
    UsageEventFactory(created_at=days_ago(29), decision=Decision.objects.get(caller="primary-31"), caller="late-report")


def test_pruning_deletes_what_is_older_than_its_age_and_takes_nothing_from_the_sums(ledger):
    hours, minutes = sums(LedgerHour, "hour"), sums(LedgerMinute, "minute")

    pruned = prune(Retention(primary_days=30, audit_days=400), now=NOW, batch_size=2)

    assert sorted(Decision.objects.values_list("caller", flat=True)) == [
        "exhausted-10", "exhausted-31", "fallback-10", "fallback-31", "primary-10"]
    assert list(UsageEvent.objects.values_list("caller", flat=True)) == ["report-10"]
    assert (pruned.decisions, pruned.usage_events) == (4, 2)
    four_hundred_days_ago = days_ago(400)
    assert sums(LedgerHour, "hour") == {key: value for key, value in hours.items() if key[0] >= four_hundred_days_ago}
    eight_days_ago = days_ago(8)
    assert sums(LedgerMinute, "minute") == {key: value for key, value in minutes.items() if key[0] >= eight_days_ago}
    assert len(pruned.batch_seconds) > 4  # two rows a batch


def test_a_deletion_outside_pruning_still_takes_from_the_sums(ledger):
    Decision.objects.filter(caller="primary-10").delete()

    assert not any(outcome == "primary" and hour >= days_ago(11) for hour, outcome, _ in sums(LedgerHour, "hour"))
    assert not any(outcome == "primary" and minute >= days_ago(11) for minute, outcome, _ in sums(LedgerMinute, "minute"))


def test_a_week_long_window_on_the_database_counters_counts_its_whole_hours_from_the_hourly_sums(db):
    openai = ProviderFactory(slug="openai", kind="openai")
    LLMModelFactory(key="gpt-4o", provider=openai)
    QuotaFactory(provider=openai, name="tokens-week", metric="tokens", window="week", limit=1_000_000)
    for age in (0.001, 0.5, 3, 6.9, 7.5):
        DecisionFactory(created_at=days_ago(age))  # 100 input and 50 output tokens each
    LedgerMinute.objects.filter(minute__lt=days_ago(1)).delete()  # read from the hours, not the minutes
    snapshot = current_snapshot()

    [reading] = DatabaseCounters().read(snapshot, snapshot.quotas, [], NOW.timestamp()).quotas.values()

    assert reading.used == 4 * 150  # not the one of 7.5 days ago


def test_the_command_prunes_with_the_configured_ages(ledger):
    call_command("prune_ledger")

    assert Decision.objects.count() == 5


@pytest.mark.parametrize(("option", "days"), [("--primary-days", "-1"), ("--primary-days", "3"), ("--audit-days", "100000")])
def test_the_command_refuses_an_age_below_the_longest_window_and_a_day_or_absurd_and_deletes_nothing(ledger, option, days):
    with pytest.raises(CommandError, match="from 8 .* to 36500.*Nothing was deleted"):
        call_command("prune_ledger", option, days)

    assert Decision.objects.count() == 9
    assert UsageEvent.objects.count() == 3


def test_the_ledger_is_pruned_every_hour_by_the_worker(ledger):
    assert PeriodicTask.objects.get(task="router.tasks.prune_ledger").crontab.minute == "17"

    pruned = prune_ledger()

    assert (pruned["decisions"], pruned["usage_events"]) == (4, 2)
    assert Decision.objects.count() == 5


def test_a_process_refuses_to_start_with_an_age_shorter_than_the_longest_window_and_a_day(tmp_path):
    env = os.environ | {"ROUTER_RETENTION_AUDIT_DAYS": "3", "SWITCHBOARD_VAR_DIR": str(tmp_path)}

    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)

    assert result.returncode != 0
    assert "router.E001" in result.stderr and "fallbacks and refusals" in result.stderr
