"""The ledger's time partitions on PostgreSQL: created ahead, dropped whole once past their retention age.

router_usageevent is partitioned by day of created_at. router_decision is partitioned by kind first
(router_decision_primary holds outcome "primary", router_decision_audit every other outcome), each
kind by period of created_at: a day for primaries, a month for the audit's fallbacks, escalations and
refusals, which are few and kept for over a year. Each partitioned table also has a default partition,
so that a row never fails to insert: it lands there when the partition of its day was not created
(the worker was down for days), and pruning deletes it by batches like any row on SQLite.

Dropping a partition deletes no row: the triggers that keep the per-minute and per-hour sums do not
fire, so the sums keep what the dropped rows added (router.models.LedgerSums). docs/architecture.md
("The ledger's partitions") says why the tables are cut this way.
"""

import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

# How far ahead partitions are created: a worker down for less than this loses nothing to the default partition.
AHEAD_DAYS = 7
# A partition's DDL waits this long for the table's lock, then gives up until the next run rather than
# queueing every decision behind it.
LOCK_TIMEOUT = "2s"
LOCK_ATTEMPTS = 5


@dataclass(frozen=True)
class Series:
    """A partitioned table whose partitions are periods of created_at."""

    table: str
    monthly: bool
    # Which retention age applies: router.retention.Retention.primary_days or .audit_days.
    age: str

    def start(self, day: date) -> date:
        """The first day of the period holding `day`."""
        return day.replace(day=1) if self.monthly else day

    def after(self, start: date) -> date:
        """The first day of the period following the one starting on `start`."""
        if not self.monthly:
            return start + timedelta(days=1)
        return date(start.year + start.month // 12, start.month % 12 + 1, 1)

    def name(self, start: date) -> str:
        return f"{self.table}_{start:%Y%m}" if self.monthly else f"{self.table}_{start:%Y%m%d}"

    @property
    def default(self) -> str:
        return f"{self.table}_default"

    def parse(self, name: str) -> date | None:
        """The first day of the period a partition of this table holds, from its name; None for another table's."""
        match = re.fullmatch(re.escape(self.table) + r"_(\d{4})(\d{2})(\d{2})?", name)
        if not match or (match.group(3) is None) != self.monthly:
            return None
        year, month, day = match.groups()
        return date(int(year), int(month), int(day or 1))


USAGE = Series("router_usageevent", monthly=False, age="primary_days")
PRIMARY_DECISIONS = Series("router_decision_primary", monthly=False, age="primary_days")
AUDIT_DECISIONS = Series("router_decision_audit", monthly=True, age="audit_days")
SERIES = (USAGE, PRIMARY_DECISIONS, AUDIT_DECISIONS)


def bound(day: date) -> str:
    return f"'{day:%Y-%m-%d} 00:00:00+00'"


def create_partition_sql(series: Series, start: date) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {series.name(start)} PARTITION OF {series.table}"
            f" FOR VALUES FROM ({bound(start)}) TO ({bound(series.after(start))})")


def periods(series: Series, first: date, last: date) -> list[date]:
    """The first days of the periods from the one holding `first` to the one holding `last`."""
    starts, start = [], series.start(first)
    while start <= last:
        starts.append(start)
        start = series.after(start)
    return starts


def is_partitioned() -> bool:
    """Whether this database's ledger is partitioned (PostgreSQL, once migration 0017 ran)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'router_decision' AND relkind = 'p'")
        return cursor.fetchone() is not None


def partitions(series: Series) -> dict[str, date]:
    """The partitions of a series that hold a period, by name, with the period's first day."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT child.relname FROM pg_inherits JOIN pg_class AS child ON child.oid = pg_inherits.inhrelid"
                       " WHERE pg_inherits.inhparent = %s::regclass", [series.table])
        names = [name for (name,) in cursor.fetchall()]
    return {name: start for name in names if (start := series.parse(name)) is not None}


def _with_lock_timeout(statement: str) -> bool:
    """Run one DDL statement in its own transaction, waiting for its lock at most LOCK_TIMEOUT at a time;
    returns whether it ran."""
    for attempt in range(LOCK_ATTEMPTS):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                cursor.execute(statement)
            return True
        except DatabaseError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != "55P03" or attempt == LOCK_ATTEMPTS - 1:  # lock_not_available
                logger.error("Ledger partition statement failed (%s): %s", exc, statement)
                return False
            time.sleep(1)
    return False


def create_ahead(now: datetime | None = None, days: int = AHEAD_DAYS) -> list[str]:
    """Create the partitions of today's periods and of the next `days` days that do not exist yet;
    returns their names. Does nothing on a ledger that is not partitioned (SQLite)."""
    if not is_partitioned():
        return []
    today = (now or timezone.now()).astimezone(UTC).date()
    created = []
    for series in SERIES:
        existing = partitions(series)
        for start in periods(series, today, today + timedelta(days=days)):
            if series.name(start) not in existing and _with_lock_timeout(create_partition_sql(series, start)):
                created.append(series.name(start))
    return created


def cutoff(series: Series, days: int, now: datetime) -> datetime:
    """The moment before which rows of the series are past `days`, rounded down to the start of their period,
    so that everything before it is whole partitions (retention keeps whole periods, never less than `days`)."""
    start = series.start((now - timedelta(days=days)).astimezone(UTC).date())
    return datetime(start.year, start.month, start.day, tzinfo=UTC)


@dataclass(frozen=True)
class Dropped:
    name: str
    seconds: float


def drop_expired(ages: dict[str, int], now: datetime) -> list[Dropped]:
    """Drop every partition whose whole period is older than its series' age (`ages`: days by Series.age)."""
    dropped = []
    for series in SERIES:
        before = cutoff(series, ages[series.age], now).date()
        for name, start in sorted(partitions(series).items(), key=lambda item: item[1]):
            if series.after(start) <= before:
                started = time.monotonic()
                if _with_lock_timeout(f"DROP TABLE {name}"):
                    dropped.append(Dropped(name, time.monotonic() - started))
    return dropped
