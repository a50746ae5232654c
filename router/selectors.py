"""Reads of the quotas' state for the API, the dashboard and the metrics: usage, when it frees up, and
the burn-rate forecast. Nothing here writes: the counters are read as they stand, and the forecast
from the ledger's per-minute sums, which the drain task keeps a second behind the counters.
"""

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import Sum

from router import counters
from router.counting import LEDGER_FIELDS, Usage, amount
from router.engine import ModelState, QuotaReading
from router.models import LedgerMinute
from router.snapshot import QuotaSpec, current_snapshot
from router.windows import bucket_at, bucket_frees_at
from switchboard.vocabulary import COUNTED_OUTCOMES, Reset

FORECAST_SECONDS = 3600


@dataclass(frozen=True)
class QuotaStatus:
    """A quota's usage right now (in counter units: micro-dollars for cost quotas) and its forecast."""

    quota: QuotaSpec
    used: int
    frees_at: float | None
    burn_per_hour: int
    soft_at: float | None
    hard_at: float | None

    @property
    def ratio(self) -> float:
        return self.used / self.quota.limit if self.quota.limit else 0.0


def usage_by_minute(quotas: Iterable[QuotaSpec], start: float, end: float) -> dict[int, int]:
    """Each quota's usage summed over the ledger from the minute of `start` to `end`, in one query over
    the ledger's per-minute sums (LedgerMinute): its cost follows the minutes it covers, not the traffic in them."""
    rows = list(
        LedgerMinute.objects.filter(minute__gte=datetime.fromtimestamp(start - start % 60, tz=UTC),
                                    minute__lte=datetime.fromtimestamp(end, tz=UTC),
                                    outcome__in=[*COUNTED_OUTCOMES, LedgerMinute.REPORTED])
        .values("model_key", "provider_slug")
        .annotate(entries=Sum("entries"), **{name: Sum(name) for name in LEDGER_FIELDS})
        .order_by()
    )
    usage = {}
    for quota in quotas:
        covered = [row for row in rows
                   if (row["model_key"] in quota.model_keys if quota.model_keys else row["provider_slug"] == quota.provider)]
        usage[quota.id] = sum(amount(quota, Usage.of_sums(row)) for row in covered)
    return usage


def _reaches(quota: QuotaSpec, level: int, used: int, rate: float, now: float) -> float | None:
    """When usage reaches `level` at `rate` a second; None if it never does in this window."""
    if used >= level:
        return now
    if rate <= 0:
        return None
    at = now + (level - used) / rate
    # Usage leaves a rolling window (at this rate it levels off at rate x window), and a calendar
    # window resets: a level reached only later than that is never reached.
    horizon = bucket_frees_at(quota, bucket_at(quota, now)) if quota.reset == Reset.CALENDAR else now + quota.window_seconds
    return at if at <= horizon else None


def quota_status(now: float | None = None) -> list[QuotaStatus]:
    """Every quota with its usage, when it frees up, and the burn-rate forecast (the last hour's rate).

    Raises router.counters.CountersUnavailable when Redis is down and ROUTER_REDIS_DOWN=refuse.
    """
    snapshot = current_snapshot()
    now = now or time.time()
    readings = counters.read(snapshot, snapshot.quotas, [], now)
    last_hour = usage_by_minute(snapshot.quotas, now - FORECAST_SECONDS, now)
    status = []
    for quota in snapshot.quotas:
        reading = readings.quotas.get(quota.id) or QuotaReading(used=0)
        rate = last_hour[quota.id] / FORECAST_SECONDS
        status.append(QuotaStatus(
            quota=quota, used=reading.used, frees_at=reading.frees_at, burn_per_hour=last_hour[quota.id],
            soft_at=_reaches(quota, quota.soft_limit, reading.used, rate, now),
            hard_at=_reaches(quota, quota.limit, reading.used, rate, now),
        ))
    return status


def model_cooldowns(now: float | None = None) -> dict[str, ModelState]:
    """The models cooling down now (after failures, or a provider's retry-after), with why and whose report
    started it; empty when the counters cannot be read (Redis down and ROUTER_REDIS_DOWN=refuse)."""
    now = time.time() if now is None else now
    snapshot = current_snapshot()
    try:
        readings = counters.read(snapshot, [], snapshot.models.values(), now)
    except counters.CountersUnavailable:
        return {}
    return {key: state for key, state in readings.models.items() if state.cooldown_until and state.cooldown_until > now}
