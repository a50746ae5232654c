"""Pruning the ledger: counted decisions and usage reports older than the ages they are kept for are
dropped a whole partition at a time on PostgreSQL (router.partitions), and deleted in small batches,
each its own short transaction, on SQLite and from PostgreSQL's default partitions; the per-minute and
per-hour sums keep what they held (router.models.LedgerSums), so charts, forecasts, tuning and the
database counters of a long window read the same after pruning as before.

A batch holds a LedgerPruning row for its transaction: the triggers that keep the sums leave that
transaction's deletions out (migration 0010). It locks only the old rows it deletes, which no decider
reads or writes (on SQLite, the database's one write lock, for the batch).
"""

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from router import partitions
from router.models import Decision, LedgerHour, LedgerMinute, LedgerPruning, UsageEvent
from switchboard.vocabulary import WINDOW_SECONDS, Outcome

BATCH_SIZE = 5000
# Nothing is pruned that a quota window still counts, with a day to spare: the ledger's rows and
# minutes are what the counters and their rebuild read for the longest window.
MINIMUM_DAYS = math.ceil(max(WINDOW_SECONDS.values()) / 86_400) + 1
MAXIMUM_DAYS = 36_500


class RetentionError(ValueError):
    """An age the ledger may not be pruned to."""


@dataclass(frozen=True)
class Retention:
    """How many days the ledger keeps primary decisions (and usage reports), and every other outcome."""

    primary_days: int
    audit_days: int

    def __post_init__(self) -> None:
        for name, days in (("primary decisions", self.primary_days), ("fallbacks and refusals", self.audit_days)):
            if not isinstance(days, int) or isinstance(days, bool) or not MINIMUM_DAYS <= days <= MAXIMUM_DAYS:
                raise RetentionError(
                    f"The age to keep {name} for must be a whole number of days from {MINIMUM_DAYS} (the longest quota "
                    f"window and a day) to {MAXIMUM_DAYS}; got {days!r}."
                )

    @classmethod
    def from_settings(cls) -> "Retention":
        return cls(settings.ROUTER_RETENTION_PRIMARY_DAYS, settings.ROUTER_RETENTION_AUDIT_DAYS)


@dataclass
class Pruned:
    """How many rows a pruning deleted, per table, and the partitions it dropped."""

    decisions: int = 0
    usage_events: int = 0
    minutes: int = 0
    hours: int = 0
    batch_seconds: list[float] = field(default_factory=list, repr=False)
    dropped: list[partitions.Dropped] = field(default_factory=list, repr=False)


def _delete_batch(oldest, batch_size: int, with_usage_events: bool = False) -> tuple[int, int]:
    """Delete the first `batch_size` rows of the queryset `oldest`, in one transaction that leaves the sums
    alone; with `with_usage_events` (decisions), the usage reports naming them first. Returns (rows
    deleted, usage reports deleted)."""
    model = oldest.model
    with transaction.atomic():
        flag = LedgerPruning.objects.create()
        ids = [model._meta.pk.get_db_prep_value(pk, connection) for pk in oldest.values_list("pk", flat=True)[:batch_size]]
        events = 0
        if ids:
            placeholders = ", ".join(["%s"] * len(ids))
            with connection.cursor() as cursor:
                if with_usage_events:
                    cursor.execute(f"DELETE FROM {UsageEvent._meta.db_table} WHERE decision_id IN ({placeholders})", ids)
                    events = cursor.rowcount
                cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE id IN ({placeholders})", ids)
        flag.delete()
    return len(ids), events


def _delete_all(oldest, batch_size: int, pruned: Pruned, with_usage_events: bool = False) -> tuple[int, int]:
    rows = events = 0
    while True:
        started = time.monotonic()
        deleted, deleted_events = _delete_batch(oldest, batch_size, with_usage_events)
        pruned.batch_seconds.append(time.monotonic() - started)
        rows, events = rows + deleted, events + deleted_events
        if deleted < batch_size:
            return rows, events


def prune(retention: Retention, now: datetime | None = None, batch_size: int = BATCH_SIZE) -> Pruned:
    """Delete what is older than the retention ages: usage reports and primary decisions after
    `primary_days`, fallbacks, escalations and refusals after `audit_days`; per-minute sums after the
    longest window and a day, per-hour sums after `audit_days`.

    On a partitioned ledger the ages are rounded up to whole periods (a day, a month for the audit's
    decisions): the partitions wholly older are dropped, and what is left older than that is only in
    the default partitions, deleted by batches."""
    now = now or timezone.now()
    primary_cutoff = now - timedelta(days=retention.primary_days)
    audit_cutoff = now - timedelta(days=retention.audit_days)
    pruned = Pruned()
    if partitions.is_partitioned():
        ages = {"primary_days": retention.primary_days, "audit_days": retention.audit_days}
        pruned.dropped = partitions.drop_expired(ages, now)
        primary_cutoff = partitions.cutoff(partitions.PRIMARY_DECISIONS, retention.primary_days, now)
        audit_cutoff = partitions.cutoff(partitions.AUDIT_DECISIONS, retention.audit_days, now)
    reports = UsageEvent.objects.filter(created_at__lt=primary_cutoff).order_by("created_at")
    pruned.usage_events += _delete_all(reports, batch_size, pruned)[0]
    for outcome in Outcome:
        cutoff = primary_cutoff if outcome == Outcome.PRIMARY else audit_cutoff
        decisions = Decision.objects.filter(outcome=outcome, created_at__lt=cutoff).order_by("created_at")
        deleted, events = _delete_all(decisions, batch_size, pruned, with_usage_events=True)
        pruned.decisions += deleted
        pruned.usage_events += events
    minutes = LedgerMinute.objects.filter(minute__lt=now - timedelta(days=MINIMUM_DAYS)).order_by("minute")
    pruned.minutes = _delete_all(minutes, batch_size, pruned)[0]
    pruned.hours = _delete_all(LedgerHour.objects.filter(hour__lt=now - timedelta(days=retention.audit_days)).order_by("hour"),
                               batch_size, pruned)[0]
    return pruned
