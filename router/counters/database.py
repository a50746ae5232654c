"""Counters read from the ledger in the database: what counts when there is no Redis, or during an outage.

The ledger is the source of truth: every counted decision (holding its estimate, replaced by the
actual usage when a report names it) and every usage report without a decision. A window's usage is
summed from the ledger's per-hour and per-minute rows (LedgerHour, LedgerMinute) for its whole hours
and minutes, and from the ledger itself for the current minute, so its cost follows the minutes in the window, not the traffic they
held; a window whose buckets are shorter than a minute (a rolling minute) is read from the ledger
alone. A decision locks the rows of the quotas it reserves on, so deciders take turns.

Counting here while Redis is down (ROUTER_REDIS_DOWN=db), the ledger lacks what Redis accepted but
had not yet written when it went, and no one can know how much that was. So until the moment Redis
was lost (`lost_at`) leaves a quota's counted window, the quota reads as full: its Redis counters may
have stood at the limit. A rolling minute routes again a minute after the loss; longer windows when
Redis is back and the counters are rebuilt from the ledger (docs/operations.md, Consistency contract).
"""

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Min, Q, Sum, Value

from providers.models import Quota
from router.counters.cooldown import MODEL_STATE_HORIZON, Report, cooldown
from router.counting import LEDGER_FIELDS, Usage, amount
from router.engine import ModelState, QuotaReading, RateLimitState, Readings, admits
from router.models import FAILURE_OR_RETRY, WITH_RATELIMIT_HEADERS, Decision, LedgerHour, LedgerMinute, LedgerSums, UsageEvent
from router.ratelimits import parse_ratelimit_headers
from router.records import DecisionAlreadyReported, DecisionRecord, UsageRecord
from router.snapshot import ModelSpec, PolicySnapshot, QuotaSpec
from router.windows import bucket_at, bucket_frees_at, bucket_seconds, bucket_start, oldest_counted_bucket
from switchboard.vocabulary import COUNTED_OUTCOMES, FAILURE_STATUSES

# Rate-limit headers are read newest first, this many reports at a time.
RATELIMIT_PAGE = 20
SUMS = {name: Sum(name) for name in LEDGER_FIELDS}
# Usage reports that count on their own: the others are counted by their decision's row.
COUNTED_ALONE = Q(decision__isnull=True) | Q(answered_instead=True)


def _dt(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def covered(queryset, quota: QuotaSpec):
    """The rows of `queryset` (ledger rows or their per-minute sums) that count toward the quota."""
    if quota.model_keys:
        return queryset.filter(model_key__in=quota.model_keys)
    return queryset.filter(provider_slug=quota.provider)


class DatabaseCounters:
    name = "database"

    def __init__(self, lost_at: float | None = None) -> None:
        self.lost_at = lost_at

    @staticmethod
    def _ledger(quota: QuotaSpec, start: float):
        """The ledger's rows from `start` on that count toward the quota, each with the requests it counts (`entries`):
        counted decisions (none for a call reported not sent), and the reports that count on their own."""
        decisions = Decision.objects.filter(outcome__in=COUNTED_OUTCOMES, created_at__gte=_dt(start)).annotate(entries=F("requests"))
        events = UsageEvent.objects.filter(COUNTED_ALONE, created_at__gte=_dt(start)).annotate(entries=Value(1))
        return covered(decisions, quota), covered(events, quota)

    @staticmethod
    def _sums(model, period: str, quota: QuotaSpec, start: float, end: float):
        rows = model.objects.filter(**{f"{period}__gte": _dt(start), f"{period}__lt": _dt(end)}, entries__gt=0,
                                    outcome__in=[*COUNTED_OUTCOMES, LedgerSums.REPORTED])
        return covered(rows, quota)

    def _minutes(self, quota: QuotaSpec, start: float, end: float):
        return self._sums(LedgerMinute, "minute", quota, start, end)

    @staticmethod
    def _split(quota: QuotaSpec, start: float, now: float) -> float:
        """Where the ledger itself is read from: the start of the current minute, if the window's buckets
        are whole minutes (so that all of a minute's rows fall in one bucket); else `start`."""
        if bucket_seconds(quota) % 60:
            return start
        return max(start, now - now % 60)

    def _summed(self, quota: QuotaSpec, start: float, end: float) -> list[dict]:
        """The sums of [start, end), both whole minutes: its whole hours from LedgerHour (a week is 168 rows
        there, 10,080 in LedgerMinute), the minutes at either end from LedgerMinute."""
        first_hour, last_hour = start + (-start) % 3600, end - end % 3600
        if last_hour - first_hour < 2 * 3600:
            return [self._minutes(quota, start, end).aggregate(entries=Sum("entries"), first=Min("minute"), **SUMS)]
        edges = self._minutes(quota, start, end).filter(Q(minute__lt=_dt(first_hour)) | Q(minute__gte=_dt(last_hour)))
        rows = [edges.aggregate(entries=Sum("entries"), first=Min("minute"), **SUMS),
                self._sums(LedgerHour, "hour", quota, first_hour, last_hour).aggregate(entries=Sum("entries"), first=Min("hour"), **SUMS)]
        if rows[1]["first"] and not rows[0]["first"]:
            # The oldest entry counted is in that hour: which minute of it decides when it stops counting.
            hour = rows[1]["first"].timestamp()
            rows[1]["first"] = self._minutes(quota, hour, hour + 3600).aggregate(first=Min("minute"))["first"] or rows[1]["first"]
        return rows

    def usage_since(self, quota: QuotaSpec, start: float, now: float) -> tuple[int, float | None]:
        """The quota's metric summed over the ledger from `start` on, and when the oldest entry counted was
        made (for a minute summed in LedgerMinute, the start of that minute)."""
        split = self._split(quota, start, now)
        rows = [queryset.aggregate(requests_counted=Sum("entries"), first=Min("created_at"), **SUMS) for queryset in self._ledger(quota, split)]
        rows = [row | {"entries": row.pop("requests_counted")} for row in rows]
        if split > start:
            rows += self._summed(quota, start, split)
        total, oldest = 0, None
        for row in rows:
            total += amount(quota, Usage.of_sums(row))
            if row["first"] and (oldest is None or row["first"].timestamp() < oldest):
                oldest = row["first"].timestamp()
        return total, oldest

    def _reading(self, quota: QuotaSpec, now: float) -> QuotaReading:
        first_bucket = oldest_counted_bucket(quota, now)
        used, oldest = self.usage_since(quota, bucket_start(quota, first_bucket), now)
        frees_at = bucket_frees_at(quota, bucket_at(quota, oldest)) if oldest is not None and used > 0 else None
        if self.lost_at is not None and bucket_at(quota, self.lost_at) >= first_bucket:
            return QuotaReading(used=max(used, quota.limit), frees_at=bucket_frees_at(quota, bucket_at(quota, self.lost_at)))
        return QuotaReading(used=used, frees_at=frees_at)

    def bucketed_usage(self, quota: QuotaSpec, now: float) -> dict[int, int]:
        """The quota's counted usage per bucket, as the Redis backend keeps it (its rebuild reads this)."""
        start = bucket_start(quota, oldest_counted_bucket(quota, now))
        split = self._split(quota, start, now)
        buckets: dict[int, int] = {}

        def add(at: datetime, amount: int) -> None:
            bucket = bucket_at(quota, at.timestamp())
            buckets[bucket] = buckets.get(bucket, 0) + amount

        for queryset in self._ledger(quota, split):
            for row in queryset.values("created_at", "entries", *LEDGER_FIELDS).iterator():
                add(row["created_at"], amount(quota, Usage.of_sums(row)))
        if split > start:
            for row in self._minutes(quota, start, split).values("minute").order_by().annotate(entries=Sum("entries"), **SUMS):
                add(row["minute"], amount(quota, Usage.of_sums(row)))
        return buckets

    @staticmethod
    def model_reports(keys: list[str], now: float) -> tuple[dict[str, list[Report]], dict[str, RateLimitState]]:
        """Per model, its recent failure and retry-after reports, and its latest rate limits."""
        recent = UsageEvent.objects.filter(created_at__gte=_dt(now - MODEL_STATE_HORIZON))
        failures: dict[str, list[Report]] = {}
        rows = (recent.filter(FAILURE_OR_RETRY, model_key__in=keys).order_by("created_at")
                .values_list("model_key", "created_at", "status", "retry_after", "caller"))
        for key, created_at, status, retry_after, caller in rows:
            if status in FAILURE_STATUSES or retry_after:
                failures.setdefault(key, []).append((created_at.timestamp(), retry_after, status in FAILURE_STATUSES, caller))
        limits: dict[str, RateLimitState] = {}
        for key in keys:
            # Newest first, a page at a time: the first report whose headers state a limit is the model's state.
            with_headers = (recent.filter(WITH_RATELIMIT_HEADERS, model_key=key).order_by("-created_at")
                            .values_list("created_at", "ratelimit_headers"))
            offset = 0
            while key not in limits and (page := list(with_headers[offset:offset + RATELIMIT_PAGE])):
                for created_at, headers in page:
                    if parsed := parse_ratelimit_headers(headers, created_at.timestamp()):
                        limits[key] = parsed
                        break
                offset += RATELIMIT_PAGE
        return failures, limits

    def model_states(self, models: Iterable[ModelSpec], now: float) -> dict[str, ModelState]:
        by_key = {m.key: m for m in models}
        if not by_key:
            return {}
        failures, limits = self.model_reports(list(by_key), now)
        states = {}
        for key, model in by_key.items():
            cool = cooldown(failures.get(key, []), model, now)
            if cool or key in limits:
                states[key] = ModelState(cooldown_until=cool and cool.until, cooldown_reason=cool.reason if cool else "",
                                         cooldown_by=cool.by if cool else "", ratelimit=limits.get(key))
        return states

    def read(self, snapshot: PolicySnapshot, quotas: Iterable[QuotaSpec], models: Iterable[ModelSpec], now: float) -> Readings:
        return Readings(
            quotas={quota.id: self._reading(quota, now) for quota in quotas},
            models=self.model_states(models, now),
        )

    def read_and_reserve(self, snapshot: PolicySnapshot, quotas: list[QuotaSpec], models: list[ModelSpec], now: float,
                         choice: DecisionRecord | None) -> tuple[Readings, bool]:
        """Reads only: a reservation here takes row locks (reserve)."""
        return self.read(snapshot, quotas, models, now), False

    def reserve(self, decision: DecisionRecord, now: float) -> bool:
        with transaction.atomic():
            ids = sorted({charge.quota.id for charge in decision.charges})
            if ids:
                # Row locks serialise deciders on PostgreSQL; SQLite runs IMMEDIATE transactions (settings).
                list(Quota.objects.select_for_update().filter(id__in=ids).order_by("id").values_list("id", flat=True))
            for charge in decision.charges:
                if not admits(charge, self._reading(charge.quota, now).used):
                    return False
            decision.to_model().insert()
            return True

    def store_refusal(self, decision: DecisionRecord) -> None:
        decision.to_model().insert()

    def lookup(self, idempotency_key: str | None, decision_id: uuid.UUID | None) -> tuple[UsageRecord | None, DecisionRecord | None]:
        existing = UsageEvent.objects.filter(idempotency_key=idempotency_key).first() if idempotency_key else None
        decision = Decision.objects.filter(pk=decision_id).first() if decision_id else None
        return (UsageRecord.from_model(existing) if existing else None), (DecisionRecord.from_model(decision) if decision else None)

    def record_usage(self, model: ModelSpec, usage: UsageRecord, decision: DecisionRecord | None,
                     charges: list[tuple[QuotaSpec, int, float]]) -> tuple[UsageRecord, bool]:
        """Store the report and settle its decision: the ledger rows are the counters (`charges` are their change)."""
        try:
            with transaction.atomic():
                if usage.idempotency_key and connection.vendor == "postgresql" and (first := _first_under_key(usage.idempotency_key)):
                    return first, False
                usage.to_model().save(force_insert=True)
                if decision:
                    if Decision.objects.select_for_update().values_list("reported", flat=True).get(pk=decision.id):
                        raise DecisionAlreadyReported
                    Decision.objects.filter(pk=decision.id).update(**usage.settles())
        except IntegrityError:
            existing = UsageEvent.objects.filter(idempotency_key=usage.idempotency_key).first() if usage.idempotency_key else None
            if existing is None:
                raise
            return UsageRecord.from_model(existing), False
        return usage, True


def _first_under_key(idempotency_key: str) -> UsageRecord | None:
    """The report already stored under this key, once no other transaction can be storing one: on PostgreSQL the
    reports are partitioned by day (router.partitions), and a partitioned table holds no unique index on the key
    alone, so reports under one key take turns on a transaction-level advisory lock."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [idempotency_key])
    existing = UsageEvent.objects.filter(idempotency_key=idempotency_key).first()
    return UsageRecord.from_model(existing) if existing else None
