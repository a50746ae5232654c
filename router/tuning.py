"""Tuning the soft limits: for each quota over a period, the fallbacks it caused at its soft limit, how
many were unnecessary, and the highest soft-limit ratio that would have kept it under its hard limit.

Read from the ledger: the fallback decisions of the period (each trace names the quota that turned
the primary away, its usage then and the call's estimate) and the per-minute sums (LedgerMinute, and
LedgerHour for what the minutes no longer hold), so that the cost follows the period's minutes and
fallbacks, not the traffic they held.

- A fallback was **unnecessary** when the quota would have stayed at or under its hard limit with the
  call counted on it, from the call until its usage left the window (or until now).
- The **suggested ratio** is the highest, in steps of 0.01 up to 1, at which replaying the period keeps
  the quota at or under its hard limit: every fallback whose quota stood below that ratio's soft limit
  is counted on the quota instead. None when the quota passed its hard limit at the ratio it had.
- **Refusals** are the period's refused decisions (fail-fast and exhausted) that passed a candidate over
  for the quota: no model was given at all, which a fallback count alone hides.

The period ends at the last whole minute (exclusive of the minute under way), so two readings within a
minute, or any two with no new traffic in between, give the same figures.

Usage is taken per minute: a quota of a rolling minute is judged on whole minutes.
"""

import math
from collections import Counter, deque
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from django.db import connections
from django.db.models import BigIntegerField, Func

from router.counting import COST_SCALE, covered_by, summed_amount
from router.models import Decision, LedgerHour, LedgerMinute
from router.retention import MINIMUM_DAYS
from router.snapshot import QuotaSpec, current_snapshot
from router.windows import bucket_at, bucket_frees_at
from switchboard.vocabulary import COUNTED_OUTCOMES, Metric, Outcome, Reset, SkipReason

DEFAULT_DAYS = 7
# The per-minute sums are kept for MINIMUM_DAYS: a longer period would be judged on hours.
MAXIMUM_DAYS = MINIMUM_DAYS - 1


class EpochSeconds(Func):
    """A datetime column as whole seconds since 1970, computed by the database: reading thousands of sums per
    minute costs far less without a timezone-aware datetime made for each."""

    output_field = BigIntegerField()

    def as_postgresql(self, compiler, connection, **extra_context):
        return self.as_sql(compiler, connection, template="CAST(EXTRACT(EPOCH FROM %(expressions)s) AS bigint)", **extra_context)

    def as_sqlite(self, compiler, connection, **extra_context):
        return self.as_sql(compiler, connection, template="CAST(strftime('%%%%s', %(expressions)s) AS integer)", **extra_context)


class TuningError(ValueError):
    """A period the tuning cannot be computed for."""


@dataclass(frozen=True)
class QuotaTuning:
    quota: QuotaSpec
    fallbacks: int  # decisions that fell back because this quota stood at its soft limit
    unnecessary: int
    peak_ratio: float  # the highest usage the quota reached in the period, as a share of its limit
    suggested_soft_limit_ratio: float | None
    refusals: int = 0  # refused decisions that passed a candidate over for this quota
    since: datetime | None = None  # the period: [since, until)
    until: datetime | None = None
    # The usage replayed at each minute of the period, oldest first: a chart of the period draws it without reading
    # the sums again.
    usage: tuple[int, ...] = field(default=(), repr=False, compare=False)

    @property
    def unnecessary_rate(self) -> float:
        return self.unnecessary / self.fallbacks if self.fallbacks else 0.0


class _Fallback(NamedTuple):  # a NamedTuple: a week of a busy quota makes thousands
    minute: int  # index into the quota's minutes
    used: int  # the quota's usage when the decision was made, as the trace shows it
    estimate: int


def _counter_scale(quota: QuotaSpec) -> int:
    """What turns a trace's figure for the quota into counter units (micro-dollars for a cost quota)."""
    return COST_SCALE if quota.metric == Metric.COST_USD else 1


def _minute_usage(quotas: list[QuotaSpec], start: datetime, end: datetime) -> dict[int, list[int]]:
    """Per quota, what each minute from `start` to `end` (exclusive) counted against it (hours older than the kept
    minutes are put on their first minute).

    One query per quota over the sums of its models, the database adding up what the quota counts into one number
    a period (router.counting.summed_amount): a week of minutes comes back as 10,080 numbers, whatever the models."""
    minutes = int((end - start).total_seconds() // 60)
    usage = {quota.id: [0] * minutes for quota in quotas}
    # Hours before the hour of the oldest minute kept, minutes from then on (a pruned part of that hour is missed).
    oldest = LedgerMinute.objects.order_by("minute").values_list("minute", flat=True).first() or end
    switch = min(oldest.replace(minute=0, second=0, microsecond=0), end)
    counted = {"outcome__in": [*COUNTED_OUTCOMES, LedgerMinute.REPORTED], "entries__gt": 0}
    first_second = int(start.timestamp())
    for quota in quotas:
        sources = [
            ("minute", LedgerMinute.objects.filter(covered_by(quota), minute__gte=max(start, switch), minute__lt=end, **counted)),
            ("hour", LedgerHour.objects.filter(covered_by(quota), hour__gte=start - timedelta(hours=1), hour__lt=switch, **counted)),
        ]
        per_minute = usage[quota.id]
        for period, rows in sources:
            sums = rows.values(at=EpochSeconds(period)).annotate(counted=summed_amount(quota)).order_by().values_list("at", "counted")
            for at, value in sums:
                per_minute[max(0, (at - first_second) // 60)] += round(value)
    return usage


def _window_ends(quota: QuotaSpec, start: datetime, minutes: int) -> list[int]:
    """For each minute, the first minute at which what it counted no longer counts."""
    if quota.reset == Reset.CALENDAR:
        base = start.timestamp()
        return [math.ceil((bucket_frees_at(quota, bucket_at(quota, base + 60 * i)) - base) / 60) for i in range(minutes)]
    length = max(1, quota.window_seconds // 60)
    return [i + length for i in range(minutes)]


def _counted(per_minute: list[int], ends: list[int]) -> list[int]:
    """The quota's usage at each minute: what every earlier minute counted, until its window ended."""
    leaving = [0] * (len(per_minute) + 1)
    counted, total = [], 0
    for i, value in enumerate(per_minute):
        total += value - leaving[i]
        if ends[i] < len(leaving):
            leaving[ends[i]] += value
        counted.append(total)
    return counted


# The quotas that turned each quota fallback's primary away below their hard limit, one row each: (second of the
# decision, quota id, its usage then, the call's estimate). The database takes the trace apart, so that a week of a busy
# quota's fallbacks (thousands of rows) comes back as numbers, neither JSON nor timezone-aware datetimes to convert.
_BLOCKED_SQL = {
    "postgresql": """
        SELECT CAST(EXTRACT(EPOCH FROM decision.created_at) AS bigint), CAST(blocked ->> 'quota_id' AS bigint),
               CAST(blocked ->> 'used' AS double precision), CAST(blocked ->> 'estimate' AS double precision)
        FROM router_decision AS decision
             CROSS JOIN LATERAL jsonb_array_elements(decision.trace -> 0 -> 'quotas') AS blocked
        WHERE decision.outcome = 'fallback' AND decision.created_at >= %s AND decision.created_at < %s
          AND decision.trace -> 0 ->> 'verdict' = 'skipped' AND decision.trace -> 0 ->> 'reason' = 'quota'
          AND jsonb_typeof(decision.trace -> 0 -> 'quotas') = 'array'
          AND CAST(blocked ->> 'quota_id' AS bigint) IN ({quota_ids})
          AND CAST(blocked ->> 'used' AS numeric) + CAST(blocked ->> 'estimate' AS numeric) <= CAST(blocked ->> 'limit' AS numeric)
    """,
    "sqlite": """
        SELECT CAST(strftime('%%s', decision.created_at) AS integer), json_extract(blocked.value, '$.quota_id'),
               json_extract(blocked.value, '$.used'), json_extract(blocked.value, '$.estimate')
        FROM router_decision AS decision, json_each(decision.trace, '$[0].quotas') AS blocked
        WHERE decision.outcome = 'fallback' AND decision.created_at >= %s AND decision.created_at < %s
          AND json_extract(decision.trace, '$[0].verdict') = 'skipped' AND json_extract(decision.trace, '$[0].reason') = 'quota'
          AND json_extract(blocked.value, '$.quota_id') IN ({quota_ids})
          AND json_extract(blocked.value, '$.used') + json_extract(blocked.value, '$.estimate')
              <= json_extract(blocked.value, '$.limit')
    """,
}


def _fallbacks(quotas: dict[int, QuotaSpec], since: datetime, start: datetime, until: datetime) -> dict[int, list[_Fallback]]:
    """Per quota, the period's fallbacks that its soft limit caused: it turned the primary (the trace's first
    candidate) away below its hard limit (used + estimate within the limit)."""
    found: dict[int, list[_Fallback]] = {quota_id: [] for quota_id in quotas}
    first_second = int(start.timestamp())
    connection = connections[Decision.objects.db]  # the read replica within router.replica.replica_reads()
    sql = _BLOCKED_SQL[connection.vendor].format(quota_ids=", ".join(str(int(quota_id)) for quota_id in quotas))
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datetimefield_value(since), connection.ops.adapt_datetimefield_value(until)])
        rows = cursor.fetchall()
    scales = {quota.id: _counter_scale(quota) for quota in quotas.values()}
    for second, quota_id, used, estimate in rows:
        scale = scales[quota_id]
        found[quota_id].append(_Fallback((second - first_second) // 60, round(used * scale), round(estimate * scale)))
    return found


def _refusals(quota_ids: set[int], since: datetime, until: datetime) -> Counter:
    """Per quota, the period's refusals (fail-fast, exhausted) that passed a candidate over for it; each counts once
    per quota however many of its candidates that quota turned away."""
    found: Counter = Counter()
    traces = Decision.objects.filter(outcome__in=(Outcome.FAILED_FAST, Outcome.EXHAUSTED), created_at__gte=since,
                                     created_at__lt=until).values_list("trace", flat=True)
    for trace in traces.iterator(chunk_size=2000):
        named = {blocked.get("quota_id") for entry in trace or [] if entry.get("reason") == SkipReason.QUOTA
                 for blocked in entry.get("quotas") or []}
        found.update(named & quota_ids)
    return found


def _highest_until(counted: list[int], ends: list[int]) -> list[int]:
    """For each minute, the highest usage from that minute until what it counts leaves the window (a sliding maximum)."""
    minutes = len(counted)
    highest = [0] * minutes
    window: deque[int] = deque()
    right = 0
    for i in range(minutes):
        end = ends[i] if ends[i] < minutes else minutes
        while right < end:
            while window and counted[window[-1]] <= counted[right]:
                window.pop()
            window.append(right)
            right += 1
        while window and window[0] < i:
            window.popleft()
        highest[i] = counted[window[0]] if window else counted[i]
    return highest


def _stays_under(quota: QuotaSpec, counted: list[int], ends: list[int], fallbacks: list[_Fallback], soft_limit: float,
                 first: int) -> bool:
    """Whether the quota stays at or under its hard limit from minute `first` on when the fallbacks below
    `soft_limit` count on it."""
    change = [0] * (len(counted) + 1)
    for fallback in fallbacks:
        if fallback.used < soft_limit:
            change[fallback.minute] += fallback.estimate
            change[min(ends[fallback.minute], len(counted))] -= fallback.estimate
    added = 0
    for i, value in enumerate(counted):
        added += change[i]
        if i >= first and value + added > quota.limit:
            return False
    return True


def _suggested_ratio(quota: QuotaSpec, counted: list[int], ends: list[int], fallbacks: list[_Fallback], first: int) -> float | None:
    if max(counted[first:], default=0) > quota.limit:
        return None
    if not fallbacks:
        return 1.0
    low, high = round(quota.soft_limit_ratio * 100), 100  # in hundredths; more admitted, the higher the ratio
    if _stays_under(quota, counted, ends, fallbacks, quota.limit * high / 100, first):
        return 1.0
    while high - low > 1:
        middle = (low + high) // 2
        if _stays_under(quota, counted, ends, fallbacks, quota.limit * middle / 100, first):
            low = middle
        else:
            high = middle
    return low / 100


def tune(days: int = DEFAULT_DAYS, now: datetime | None = None, quota_ids: Collection[int] | None = None) -> list[QuotaTuning]:
    """Every quota's soft-limit tuning (or only those of `quota_ids`) over the `days` days before the last whole minute."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAXIMUM_DAYS:
        raise TuningError(f"days must be a whole number from 1 to {MAXIMUM_DAYS}: the per-minute sums the tuning reads "
                          f"are kept for {MINIMUM_DAYS} days.")
    now = (now or datetime.now(tz=UTC)).replace(second=0, microsecond=0)
    return tune_period(now - timedelta(days=days), now, quota_ids, now=now)


def tune_period(since: datetime, until: datetime, quota_ids: Collection[int] | None = None,
                now: datetime | None = None) -> list[QuotaTuning]:
    """The tuning over [since, until), both taken to their minute, `until` to the last whole minute at the latest,
    and `since` to at most MAXIMUM_DAYS before it; each result's `since` and `until` say the period it covers."""
    last_whole_minute = (now or datetime.now(tz=UTC)).replace(second=0, microsecond=0)
    until = min(until.replace(second=0, microsecond=0), last_whole_minute)
    since = max(since.replace(second=0, microsecond=0), until - timedelta(days=MAXIMUM_DAYS))
    if since >= until:
        raise TuningError("The period must end after it starts, at the last whole minute at the latest.")
    quotas = [quota for quota in current_snapshot().quotas if quota_ids is None or quota.id in quota_ids]
    if not quotas:
        return []
    longest = max(quota.window_seconds for quota in quotas)
    start = since - timedelta(seconds=longest)
    per_minute = _minute_usage(quotas, start, until)
    fallbacks = _fallbacks({quota.id: quota for quota in quotas}, since, start, until)
    refusals = _refusals({quota.id for quota in quotas}, since, until)
    first = int((since - start).total_seconds() // 60)
    results = []
    for quota in quotas:
        ends = _window_ends(quota, start, len(per_minute[quota.id]))
        counted = _counted(per_minute[quota.id], ends)
        caused = fallbacks[quota.id]
        highest = _highest_until(counted, ends) if caused else []
        unnecessary = sum(1 for f in caused if highest[f.minute] + f.estimate <= quota.limit)
        results.append(QuotaTuning(
            quota=quota, fallbacks=len(caused), unnecessary=unnecessary,
            peak_ratio=round(max(counted[first:], default=0) / quota.limit, 4) if quota.limit else 0.0,
            suggested_soft_limit_ratio=_suggested_ratio(quota, counted, ends, caused, first),
            refusals=refusals[quota.id], since=since, until=until, usage=tuple(counted[first:]),
        ))
    return results
