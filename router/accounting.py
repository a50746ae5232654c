"""Quota counters shared by every web process: one interface, a Redis and a database backend.

The ledger in the database is the source of truth: every counted decision (holding its estimate,
replaced by the actual usage when a report names it) and every usage report without a decision.
The database backend sums that ledger (its per-minute sums for whole minutes), under row locks. The
Redis backend keeps the same sums in per-window buckets (router.windows), checks and reserves with
one Lua script, and is rebuilt from the ledger whenever Redis comes back empty or after an outage.

If Redis cannot be reached, ROUTER_REDIS_DOWN says what happens: `db` counts on the database
(globally, never per process) and `refuse` answers 503; /api/v1/health reports it either way.
"""

import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol, TypeVar

import orjson
import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Min, Sum
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from providers.models import Quota
from router import ledger
from router.engine import Charge, ModelState, QuotaReading, RateLimitState, Readings, admits, amount_for
from router.models import FAILURE_OR_RETRY, WITH_RATELIMIT_HEADERS, Decision, LedgerMinute, Outcome, UsageEvent
from router.ratelimits import parse_ratelimit_headers
from router.snapshot import COST_SCALE, ModelSpec, PolicySnapshot, QuotaSpec, current_snapshot
from router.windows import bucket_at, bucket_frees_at, bucket_seconds, bucket_start, oldest_counted_bucket

logger = logging.getLogger(__name__)

COUNTED_OUTCOMES = (Outcome.PRIMARY, Outcome.FALLBACK)
FAILURE_STATUSES = (UsageEvent.Status.RATE_LIMITED, UsageEvent.Status.ERROR)
# How far back the ledger is read for cooldowns and rate-limit headers.
MODEL_STATE_HORIZON = 3600
RATELIMIT_PAGE = 20
# How long Redis remembers a counted decision (for the usage report that names it) and an idempotency
# key. Older ones are looked up in the database; an idempotency key repeated later than this is
# still counted once, the repeat being taken back when the ledger is written (router.ledger).
DECISION_MEMORY_SECONDS = 3600
IDEMPOTENCY_MEMORY_SECONDS = 3600
T = TypeVar("T")


class CountersUnavailable(Exception):
    """Redis is down and ROUTER_REDIS_DOWN=refuse."""


class DecisionAlreadyReported(Exception):
    """A usage report names a decision whose usage was already reported."""


@dataclass(frozen=True)
class DecisionRef:
    """What a usage report needs of the decision it names."""

    id: uuid.UUID
    outcome: str
    model_key: str
    input_tokens: int
    output_tokens: int
    created_at: float
    reported: bool

    @classmethod
    def of(cls, decision: Decision) -> "DecisionRef":
        return cls(decision.id, decision.outcome, decision.model_key, decision.input_tokens, decision.output_tokens,
                   decision.created_at.timestamp(), decision.reported)


def usage_charges(model: ModelSpec, event: UsageEvent, decision: DecisionRef | None) -> list[tuple[QuotaSpec, int, float]]:
    """What a usage report adds to each quota of its model, and when: (quota, amount, counted at).

    A report naming its decision replaces the estimate counted at decision time with the actual
    usage, in the decision's bucket (not at all once that bucket has left the window).
    """
    now = event.created_at.timestamp()
    if decision is None:
        return [(q, amount_for(q, model, event.input_tokens, event.output_tokens), now) for q in model.quotas]
    return [
        (q, amount_for(q, model, event.input_tokens, event.output_tokens, requests=0)
         - amount_for(q, model, decision.input_tokens, decision.output_tokens, requests=0), decision.created_at)
        for q in model.quotas if bucket_at(q, decision.created_at) >= oldest_counted_bucket(q, now)
    ]


def _dt(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def cooldown_from(reports: Iterable[tuple[float, int | None, bool]], model: ModelSpec, now: float) -> tuple[float | None, str]:
    """When the model's cooldown ends, from its reports as (time, retry_after, failed), in time order."""
    until, reason = None, ""
    recent: deque[float] = deque()
    for at, retry_after, failed in reports:
        if failed:
            recent.append(at)
        while recent and recent[0] <= at - model.cooldown_window_seconds:
            recent.popleft()
        if failed and len(recent) >= model.cooldown_failures and at + model.cooldown_seconds > (until or 0):
            until, reason = at + model.cooldown_seconds, f"{len(recent)} failures within {model.cooldown_window_seconds} s"
        if retry_after and at + retry_after > (until or 0):
            until, reason = at + retry_after, f"provider asked to retry after {retry_after} s"
    if until is None or until <= now:
        return None, ""
    return until, reason


def ledger_amount(quota: QuotaSpec, requests: int | None, input_tokens: int | None, output_tokens: int | None,
                  cost_usd: Decimal | None) -> int:
    """What ledger rows (or their sums) count toward the quota, in its metric's unit."""
    if quota.metric == "cost_usd":
        return round((cost_usd or 0) * COST_SCALE)
    return amount_for(quota, None, input_tokens or 0, output_tokens or 0, requests=requests or 0)


def usage_by_minute(quotas: Iterable[QuotaSpec], start: float, end: float) -> dict[int, int]:
    """Each quota's metric summed over the ledger from the minute of `start` to `end`, in one query
    over the ledger's per-minute sums (LedgerMinute): the burn-rate forecast's reading, whose cost
    follows the minutes it covers, not the traffic in them."""
    rows = list(
        LedgerMinute.objects.filter(minute__gte=_dt(start - start % 60), minute__lte=_dt(end),
                                    outcome__in=[*COUNTED_OUTCOMES, LedgerMinute.REPORTED])
        .values("model_key", "provider_slug")
        .annotate(requests=Sum("entries"), input=Sum("input_tokens"), output=Sum("output_tokens"), cost=Sum("cost_usd"))
        .order_by()
    )
    usage = {}
    for quota in quotas:
        covered = [row for row in rows
                   if (row["model_key"] in quota.model_keys if quota.model_keys else row["provider_slug"] == quota.provider)]
        usage[quota.id] = sum(ledger_amount(quota, row["requests"], row["input"], row["output"], row["cost"]) for row in covered)
    return usage


class Counters(Protocol):
    name: str

    def read(self, snapshot: PolicySnapshot, quotas: Iterable[QuotaSpec], models: Iterable[ModelSpec], now: float) -> Readings: ...

    def read_and_reserve(self, snapshot: PolicySnapshot, quotas: list[QuotaSpec], models: list[ModelSpec], now: float,
                         choice: tuple[list[Charge], Decision] | None) -> tuple[Readings, bool]: ...

    def reserve(self, charges: list[Charge], now: float, decision: Decision) -> bool: ...

    def store_refusal(self, decision: Decision) -> None: ...

    def lookup(self, idempotency_key: str | None, decision_id: uuid.UUID | None) -> tuple[UsageEvent | None, DecisionRef | None]: ...

    def record_usage(self, model: ModelSpec, event: UsageEvent, decision: DecisionRef | None) -> tuple[UsageEvent, bool]: ...


class DatabaseCounters:
    """Counts from the ledger; quota rows are locked while a decision checks and stores.

    A window read sums the ledger's per-minute rows (LedgerMinute) for its whole minutes and the ledger
    itself only for the current minute, so its cost follows the minutes in the window, not the traffic
    they held. A window whose buckets are shorter than a minute (a rolling minute) is read from the
    ledger alone.
    """

    name = "database"

    @staticmethod
    def _covered(queryset, quota: QuotaSpec):
        if quota.model_keys:
            return queryset.filter(model_key__in=quota.model_keys)
        return queryset.filter(provider_slug=quota.provider)

    @classmethod
    def _ledger(cls, quota: QuotaSpec, start: float):
        decisions = Decision.objects.filter(outcome__in=COUNTED_OUTCOMES, created_at__gte=_dt(start))
        events = UsageEvent.objects.filter(decision__isnull=True, created_at__gte=_dt(start))
        return cls._covered(decisions, quota), cls._covered(events, quota)

    @classmethod
    def _minutes(cls, quota: QuotaSpec, start: float, end: float):
        rows = LedgerMinute.objects.filter(minute__gte=_dt(start), minute__lt=_dt(end), entries__gt=0,
                                           outcome__in=[*COUNTED_OUTCOMES, LedgerMinute.REPORTED])
        return cls._covered(rows, quota)

    @staticmethod
    def _split(quota: QuotaSpec, start: float, now: float) -> float:
        """Where the ledger itself is read from: the start of the current minute, if the window's buckets
        are whole minutes (so that all of a minute's rows fall in one bucket); else `start`."""
        if bucket_seconds(quota) % 60:
            return start
        return max(start, now - now % 60)

    def usage_since(self, quota: QuotaSpec, start: float, now: float) -> tuple[int, float | None]:
        """The quota's metric summed over the ledger from `start` on, and when the oldest entry counted was
        made (for a minute summed in LedgerMinute, the start of that minute)."""
        split = self._split(quota, start, now)
        total, oldest = 0, None
        sums = {"input": Sum("input_tokens"), "output": Sum("output_tokens"), "cost": Sum("cost_usd")}
        rows = [queryset.aggregate(requests=Count("pk"), first=Min("created_at"), **sums) for queryset in self._ledger(quota, split)]
        if split > start:
            rows.append(self._minutes(quota, start, split).aggregate(requests=Sum("entries"), first=Min("minute"), **sums))
        for row in rows:
            total += ledger_amount(quota, row["requests"], row["input"], row["output"], row["cost"])
            if row["first"] and (oldest is None or row["first"].timestamp() < oldest):
                oldest = row["first"].timestamp()
        return total, oldest

    def _reading(self, quota: QuotaSpec, now: float) -> QuotaReading:
        used, oldest = self.usage_since(quota, bucket_start(quota, oldest_counted_bucket(quota, now)), now)
        frees_at = bucket_frees_at(quota, bucket_at(quota, oldest)) if oldest is not None and used > 0 else None
        return QuotaReading(used=used, frees_at=frees_at)

    def bucketed_usage(self, quota: QuotaSpec, now: float) -> dict[int, int]:
        """The quota's counted usage per bucket, as the Redis backend keeps it."""
        start = bucket_start(quota, oldest_counted_bucket(quota, now))
        split = self._split(quota, start, now)
        buckets: dict[int, int] = {}

        def add(at: datetime, amount: int) -> None:
            bucket = bucket_at(quota, at.timestamp())
            buckets[bucket] = buckets.get(bucket, 0) + amount

        for queryset in self._ledger(quota, split):
            for at, input_tokens, output_tokens, cost in queryset.values_list("created_at", "input_tokens", "output_tokens", "cost_usd").iterator():
                add(at, ledger_amount(quota, 1, input_tokens, output_tokens, cost))
        if split > start:
            minutes = (self._minutes(quota, start, split).values("minute").order_by()
                       .annotate(requests=Sum("entries"), input=Sum("input_tokens"), output=Sum("output_tokens"), cost=Sum("cost_usd")))
            for row in minutes:
                add(row["minute"], ledger_amount(quota, row["requests"], row["input"], row["output"], row["cost"]))
        return buckets

    @staticmethod
    def model_reports(keys: list[str], now: float) -> tuple[dict[str, list[tuple[float, int | None, bool]]], dict[str, RateLimitState]]:
        """Per model, its recent failure and retry-after reports as (time, retry_after, failed), and its latest rate limits."""
        recent = UsageEvent.objects.filter(created_at__gte=_dt(now - MODEL_STATE_HORIZON))
        failures: dict[str, list[tuple[float, int | None, bool]]] = {}
        rows = (recent.filter(FAILURE_OR_RETRY, model_key__in=keys).order_by("created_at")
                .values_list("model_key", "created_at", "status", "retry_after"))
        for key, created_at, status, retry_after in rows:
            if status in FAILURE_STATUSES or retry_after:
                failures.setdefault(key, []).append((created_at.timestamp(), retry_after, status in FAILURE_STATUSES))
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
            until, reason = cooldown_from(failures.get(key, []), model, now)
            if until or key in limits:
                states[key] = ModelState(cooldown_until=until, cooldown_reason=reason, ratelimit=limits.get(key))
        return states

    def read(self, snapshot: PolicySnapshot, quotas: Iterable[QuotaSpec], models: Iterable[ModelSpec], now: float) -> Readings:
        return Readings(
            quotas={quota.id: self._reading(quota, now) for quota in quotas},
            models=self.model_states(models, now),
        )

    def read_and_reserve(self, snapshot: PolicySnapshot, quotas: list[QuotaSpec], models: list[ModelSpec], now: float,
                         choice: tuple[list[Charge], Decision] | None) -> tuple[Readings, bool]:
        """Reads only: a reservation here takes row locks (reserve)."""
        return self.read(snapshot, quotas, models, now), False

    def reserve(self, charges: list[Charge], now: float, decision: Decision) -> bool:
        with transaction.atomic():
            ids = sorted({charge.quota.id for charge in charges})
            if ids:
                # Row locks serialise deciders on PostgreSQL; SQLite runs IMMEDIATE transactions (settings).
                list(Quota.objects.select_for_update().filter(id__in=ids).order_by("id").values_list("id", flat=True))
            for charge in charges:
                if not admits(charge, self._reading(charge.quota, now).used):
                    return False
            decision.insert()
            return True

    def store_refusal(self, decision: Decision) -> None:
        decision.insert()

    def lookup(self, idempotency_key: str | None, decision_id: uuid.UUID | None) -> tuple[UsageEvent | None, DecisionRef | None]:
        existing = UsageEvent.objects.filter(idempotency_key=idempotency_key).first() if idempotency_key else None
        decision = Decision.objects.filter(pk=decision_id).first() if decision_id else None
        return existing, DecisionRef.of(decision) if decision else None

    def record_usage(self, model: ModelSpec, event: UsageEvent, decision: DecisionRef | None) -> tuple[UsageEvent, bool]:
        """Store the report; the ledger rows are the counters."""
        try:
            with transaction.atomic():
                event.save(force_insert=True)
                if decision:
                    if Decision.objects.select_for_update().values_list("reported", flat=True).get(pk=decision.id):
                        raise DecisionAlreadyReported
                    Decision.objects.filter(pk=decision.id).update(
                        input_tokens=event.input_tokens, output_tokens=event.output_tokens, cost_usd=event.cost_usd, reported=True,
                    )
        except IntegrityError:
            existing = UsageEvent.objects.filter(idempotency_key=event.idempotency_key).first() if event.idempotency_key else None
            if existing is None:
                raise
            return existing, False
        return event, True


class RedisCounters:
    """Per-quota bucket hashes in Redis; checks and reservations are one atomic Lua script."""

    name = "redis"
    # Part of every counter key's name: processes that keep the hashes differently never share one,
    # and a new layout starts from a rebuild of the ledger (its ready marker is missing).
    LAYOUT = "v2"

    # A quota's hash holds its buckets ('<bucket>': usage) and two fields that make a read O(1):
    # 'total', the sum of every bucket in the hash, and 'low', at most its oldest bucket. `add` keeps
    # both with every change of a bucket; `counted` scans the buckets only when 'low' has left the
    # window or holds no usage, deleting the buckets that no longer count.
    QUOTA_FUNCTIONS = """
    local function add(key, bucket, amount, ttl)
      redis.call('HINCRBY', key, bucket, amount)
      redis.call('HINCRBY', key, 'total', amount)
      local low = tonumber(redis.call('HGET', key, 'low'))
      if low == nil or tonumber(bucket) < low then
        redis.call('HSET', key, 'low', bucket)
      end
      redis.call('EXPIRE', key, ttl)
    end

    -- The usage counted from bucket `oldest` on, and the oldest bucket holding usage (-1 if none).
    local function counted(key, oldest)
      local state = redis.call('HMGET', key, 'total', 'low')
      local low = tonumber(state[2])
      if low ~= nil and low >= oldest and (tonumber(redis.call('HGET', key, state[2])) or 0) > 0 then
        return tonumber(state[1]), low
      end
      local fields = redis.call('HGETALL', key)
      local total, first = 0, -1
      low = nil
      for j = 1, #fields, 2 do
        local bucket, value = tonumber(fields[j]), tonumber(fields[j + 1])
        if bucket ~= nil then
          if bucket < oldest or value == 0 then
            redis.call('HDEL', key, fields[j])
          else
            total = total + value
            if low == nil or bucket < low then low = bucket end
            if value > 0 and (first < 0 or bucket < first) then first = bucket end
          end
        end
      end
      if low == nil then
        redis.call('HDEL', key, 'total', 'low')
      else
        redis.call('HSET', key, 'total', string.format('%d', total), 'low', string.format('%d', low))
      end
      return total, first
    end
    """

    # KEYS: one hash per quota, then the ready marker, the ledger stream and the decision's memory.
    # ARGV, six per quota: oldest counted bucket, bucket to add to, amount, soft limit (-1: may use the
    # headroom), hard limit, key lifetime; then the decision's ledger row, its memory, that memory's
    # lifetime. Returns 0 when reserved and recorded, -1 when the counters are being rebuilt, else the
    # 1-based index of the first quota that has no room.
    RESERVE = QUOTA_FUNCTIONS + """
    local n = #KEYS - 3
    if redis.call('EXISTS', KEYS[n + 1]) == 0 then
      return -1
    end
    for i = 1, n do
      local base = (i - 1) * 6
      local used = counted(KEYS[i], tonumber(ARGV[base + 1]))
      local amount, soft, limit = tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4]), tonumber(ARGV[base + 5])
      if used + amount > limit or (soft >= 0 and used >= soft) then
        return i
      end
    end
    for i = 1, n do
      local base = (i - 1) * 6
      add(KEYS[i], ARGV[base + 2], ARGV[base + 3], ARGV[base + 6])
    end
    local row = n * 6
    redis.call('XADD', KEYS[n + 2], '*', 'kind', 'decision', 'row', ARGV[row + 1])
    redis.call('HSET', KEYS[n + 3], 'decision', ARGV[row + 2])
    redis.call('EXPIRE', KEYS[n + 3], ARGV[row + 3])
    return 0
    """

    # KEYS: one hash per quota, then the ready marker, the ledger stream, the idempotency key's
    # memory, the named decision's memory and the model's rate-limit state. ARGV: the number of
    # quotas; three per quota: bucket, amount, key lifetime; then the report's ledger row, how long
    # to remember its idempotency key ('' when it has none), how long to remember the named decision
    # ('' when none is named), the rate-limit state ('' when none was reported) and when that expires.
    # Returns {0} when counted and recorded, {1, row} with the earlier report's ledger row when the
    # idempotency key was used, {2} when the decision was already reported, {-1} while the counters
    # are being rebuilt.
    USAGE = QUOTA_FUNCTIONS + """
    local n = tonumber(ARGV[1])
    local ready, stream, idempotency, decision, ratelimit = KEYS[n + 1], KEYS[n + 2], KEYS[n + 3], KEYS[n + 4], KEYS[n + 5]
    local row = 1 + n * 3
    if redis.call('EXISTS', ready) == 0 then
      return {-1}
    end
    if ARGV[row + 2] ~= '' then
      local earlier = redis.call('GET', idempotency)
      if earlier then
        return {1, earlier}
      end
    end
    if ARGV[row + 3] ~= '' then
      if redis.call('HSETNX', decision, 'reported', '1') == 0 then
        return {2}
      end
      if redis.call('TTL', decision) < 0 then
        redis.call('EXPIRE', decision, ARGV[row + 3])
      end
    end
    for i = 1, n do
      local base = 1 + (i - 1) * 3
      add(KEYS[i], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3])
    end
    redis.call('XADD', stream, '*', 'kind', 'usage', 'row', ARGV[row + 1])
    if ARGV[row + 2] ~= '' then
      redis.call('SET', idempotency, ARGV[row + 1], 'EX', ARGV[row + 2])
    end
    if ARGV[row + 4] ~= '' then
      redis.call('SET', ratelimit, ARGV[row + 4], 'EXAT', ARGV[row + 5])
    end
    return {0}
    """

    # KEYS: quota hashes; ARGV, three per hash: bucket, amount (negative to take back), key lifetime.
    TAKE_BACK = QUOTA_FUNCTIONS + """
    for i = 1, #KEYS do
      add(KEYS[i], ARGV[i * 3 - 2], ARGV[i * 3 - 1], ARGV[i * 3])
    end
    """

    # KEYS: the quota hashes, then the models' cooldown and rate-limit keys, then the ready marker,
    # the ledger stream and the memory of the decision. ARGV: the number of quota hashes, each one's
    # oldest counted bucket; then the choice to reserve at once if it holds (services.decide): the
    # chosen model's 1-based position among the models (0: read only), its number of charges, six per
    # charge (quota position, bucket, amount, soft limit or -1, hard limit, key lifetime), the
    # decision's ledger row, its memory and that memory's lifetime.
    # Returns the marker's existence, whether the choice was reserved, then per quota its counted
    # usage and its oldest bucket holding usage (-1 if none), then the state keys' values; the
    # readings are those from before the reservation. Summing here keeps the reply small.
    READ = QUOTA_FUNCTIONS + """
    local quotas = tonumber(ARGV[1])
    local ready = redis.call('EXISTS', KEYS[#KEYS - 2])
    local out = {ready, 0}
    local used = {}
    for i = 1, quotas do
      local sum, first = counted(KEYS[i], tonumber(ARGV[i + 1]))
      used[i] = sum
      out[#out + 1] = sum
      out[#out + 1] = first
    end
    for i = quotas + 1, #KEYS - 3 do
      out[#out + 1] = redis.call('GET', KEYS[i])
    end
    local choice = tonumber(ARGV[quotas + 2])
    if ready == 0 or choice == 0 then
      return out
    end
    local state = 2 + 2 * quotas + 2 * (choice - 1)
    if out[state + 1] or out[state + 2] then
      return out
    end
    local charges = tonumber(ARGV[quotas + 3])
    local base = quotas + 3
    for c = 0, charges - 1 do
      local a = base + c * 6
      local q, amount, soft, limit = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
      if used[q] + amount > limit or (soft >= 0 and used[q] >= soft) then
        return out
      end
    end
    for c = 0, charges - 1 do
      local a = base + c * 6
      add(KEYS[tonumber(ARGV[a + 1])], ARGV[a + 2], ARGV[a + 3], ARGV[a + 6])
    end
    local row = base + charges * 6
    redis.call('XADD', KEYS[#KEYS - 1], '*', 'kind', 'decision', 'row', ARGV[row + 1])
    redis.call('HSET', KEYS[#KEYS], 'decision', ARGV[row + 2])
    redis.call('EXPIRE', KEYS[#KEYS], ARGV[row + 3])
    out[2] = 1
    return out
    """

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._read = client.register_script(self.READ)
        self._reserve = client.register_script(self.RESERVE)
        self._usage = client.register_script(self.USAGE)
        self._take_back = client.register_script(self.TAKE_BACK)
        self._local = threading.local()

    def quota_key(self, quota_id: int) -> str:
        return f"{self.prefix}quota:{self.LAYOUT}:{quota_id}"

    def cooldown_key(self, model_key: str) -> str:
        return f"{self.prefix}cooldown:{model_key}"

    def failures_key(self, model_key: str) -> str:
        return f"{self.prefix}failures:{model_key}"

    def ratelimit_key(self, model_key: str) -> str:
        return f"{self.prefix}ratelimit:{model_key}"

    def decision_key(self, decision_id: uuid.UUID) -> str:
        return f"{self.prefix}decision:{decision_id}"

    def idempotency_key(self, key: str) -> str:
        return f"{self.prefix}idempotency:{key}"

    @property
    def ready_key(self) -> str:
        return f"{self.prefix}ready:{self.LAYOUT}"

    @property
    def stream_key(self) -> str:
        return f"{self.prefix}ledger"

    @staticmethod
    def _failure_member(retry_after: int | None, failed: bool) -> str:
        """A unique member of a model's failures set: '<retry_after>:<1 if failed>:<nonce>'."""
        return f"{retry_after or 0}:{int(failed)}:{uuid.uuid4().hex[:8]}"

    @staticmethod
    def _ttl(quota: QuotaSpec) -> int:
        return quota.window_seconds + 2 * bucket_seconds(quota)

    def read(self, snapshot: PolicySnapshot, quotas: Iterable[QuotaSpec], models: Iterable[ModelSpec], now: float) -> Readings:
        return self.read_and_reserve(snapshot, list(quotas), list(models), now, None)[0]

    def read_and_reserve(self, snapshot: PolicySnapshot, quotas: list[QuotaSpec], models: list[ModelSpec], now: float,
                         choice: tuple[list[Charge], Decision] | None) -> tuple[Readings, bool]:
        """Read the counters, and reserve `choice` (charges, decision) in the same step if no quota,
        cooldown or rate limit of its model stands in its way; returns (readings, reserved)."""
        state_keys = [k for m in models for k in (self.cooldown_key(m.key), self.ratelimit_key(m.key))]
        keys = [self.quota_key(q.id) for q in quotas] + state_keys + [self.ready_key, self.stream_key]
        args: list = [len(quotas)] + [oldest_counted_bucket(q, now) for q in quotas]
        if choice:
            charges, decision = choice
            positions = {q.id: index for index, q in enumerate(quotas, start=1)}
            args += [[m.key for m in models].index(decision.model_key) + 1, len(charges)]
            for charge in charges:
                args += [positions[charge.quota.id], bucket_at(charge.quota, now), charge.amount,
                         -1 if charge.soft_limit is None else charge.soft_limit, charge.limit, self._ttl(charge.quota)]
            keys.append(self.decision_key(decision.id))
            args += [ledger.decision_row(decision), self._memory(decision, now), DECISION_MEMORY_SECONDS]
        else:
            keys.append(self.decision_key(""))
            args.append(0)
        ready, reserved, *values = self._evalsha(self._read, keys, args)
        if not ready:
            self.ensure_built(snapshot, now)
            ready, reserved, *values = self._evalsha(self._read, keys, args)

        readings = Readings()
        for index, quota in enumerate(quotas):
            used, first = values[2 * index], values[2 * index + 1]
            readings.quotas[quota.id] = QuotaReading(used=used, frees_at=bucket_frees_at(quota, first) if first >= 0 else None)
        states = values[2 * len(quotas):]
        for index, model in enumerate(models):
            cooldown, ratelimit = states[2 * index], states[2 * index + 1]
            if cooldown or ratelimit:
                cool = json.loads(cooldown) if cooldown else {}
                readings.models[model.key] = ModelState(
                    cooldown_until=cool.get("until"), cooldown_reason=cool.get("reason", ""),
                    ratelimit=RateLimitState(**json.loads(ratelimit)) if ratelimit else None,
                )
        return readings, bool(reserved)

    def _evalsha(self, script: Script, keys: list, args: list):
        """Run a registered script on this thread's own connection (_script_connection).

        Script.__call__'s isinstance check on a typing Protocol cost the hot path 4% of its CPU, and
        taking a connection from redis-py's pool and giving it back around each call 6% of its
        instructions (README, "Performance").
        """
        connection = self._script_connection()
        try:
            connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            return connection.read_response()
        except NoScriptError:
            return script(keys=keys, args=args)
        except BaseException:
            connection.disconnect()  # the reply may be half read: the next call starts on a new connection
            raise

    def _script_connection(self) -> redis.Connection:
        """This thread's connection for the scripts, checked as redis-py's pool checks one before lending it.

        A connection the server closed (Redis restarted) or that holds unread data is reconnected;
        a process forked from this one makes its own.
        """
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.connection, local.pid = self.client.connection_pool.make_connection(), os.getpid()
        connection = local.connection
        connection.connect()
        try:
            if connection.can_read():
                raise redis.ConnectionError("Connection has data")
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            connection.disconnect()
            connection.connect()
        return connection

    @staticmethod
    def _memory(decision: Decision, now: float) -> bytes:
        """What a usage report naming the decision needs of it (DecisionRef)."""
        return orjson.dumps([decision.outcome, decision.model_key, decision.input_tokens, decision.output_tokens, now])

    def reserve(self, charges: list[Charge], now: float, decision: Decision) -> bool:
        keys, args = [], []
        for charge in charges:
            quota = charge.quota
            keys.append(self.quota_key(quota.id))
            args += [oldest_counted_bucket(quota, now), bucket_at(quota, now), charge.amount,
                     -1 if charge.soft_limit is None else charge.soft_limit, charge.limit, self._ttl(quota)]
        keys += [self.ready_key, self.stream_key, self.decision_key(decision.id)]
        args += [ledger.decision_row(decision), self._memory(decision, now), DECISION_MEMORY_SECONDS]
        answer = self._evalsha(self._reserve, keys, args)
        if answer == -1:
            self.ensure_built(current_snapshot(), now)
        return answer == 0

    def store_refusal(self, decision: Decision) -> None:
        self.client.xadd(self.stream_key, {"kind": "decision", "row": ledger.decision_row(decision)})

    def lookup(self, idempotency_key: str | None, decision_id: uuid.UUID | None) -> tuple[UsageEvent | None, DecisionRef | None]:
        if not idempotency_key and not decision_id:
            return None, None
        pipe = self.client.pipeline(transaction=False)
        if idempotency_key:
            pipe.get(self.idempotency_key(idempotency_key))
        if decision_id:
            pipe.hget(self.decision_key(decision_id), "decision")
        answers = pipe.execute()
        earlier = answers.pop(0) if idempotency_key else None
        memory = answers.pop(0) if decision_id else None
        existing = ledger.usage_from_row(json.loads(earlier)) if earlier else None
        if not decision_id:
            return existing, None
        if memory:
            outcome, model_key, input_tokens, output_tokens, created_at = json.loads(memory)
            return existing, DecisionRef(decision_id, outcome, model_key, input_tokens, output_tokens, created_at, reported=False)
        # Not remembered (older, or a refusal): it is in the database once the ledger is drained.
        self.drain()
        return existing, DatabaseCounters().lookup(None, decision_id)[1]

    def record_usage(self, model: ModelSpec, event: UsageEvent, decision: DecisionRef | None) -> tuple[UsageEvent, bool]:
        applied = [(self.quota_key(q.id), bucket_at(q, at), amount, self._ttl(q)) for q, amount, at in usage_charges(model, event, decision)]
        now = event.created_at.timestamp()
        limits = parse_ratelimit_headers(event.ratelimit_headers, now) if event.ratelimit_headers else None
        expires = max((t for t in (limits.requests_reset_at, limits.tokens_reset_at) if t), default=now + 60) if limits else 0
        keys = [charge[0] for charge in applied] + [
            self.ready_key, self.stream_key, self.idempotency_key(event.idempotency_key or ""),
            self.decision_key(decision.id if decision else ""), self.ratelimit_key(model.key),
        ]
        args = [len(applied)]
        for _, bucket, amount, ttl in applied:
            args += [bucket, amount, ttl]
        args += [
            ledger.usage_row(event, applied),
            IDEMPOTENCY_MEMORY_SECONDS if event.idempotency_key else "",
            DECISION_MEMORY_SECONDS if decision else "",
            json.dumps(limits.__dict__) if limits and expires > now else "",
            int(expires) + 1,
        ]
        while True:
            answer = self._evalsha(self._usage, keys, args)
            if answer[0] != -1:
                break
            self.ensure_built(current_snapshot(), now)
        if answer[0] == 1:
            return ledger.usage_from_row(json.loads(answer[1])), False
        if answer[0] == 2:
            raise DecisionAlreadyReported
        if event.status in FAILURE_STATUSES or event.retry_after:
            self._note_failure(model, event)
        return event, True

    def _note_failure(self, model: ModelSpec, event: UsageEvent) -> None:
        """Remember a failed call (or a retry-after) and put the model in cooldown when it has failed often enough."""
        now = event.created_at.timestamp()
        key = self.failures_key(model.key)
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(key, {self._failure_member(event.retry_after, event.status in FAILURE_STATUSES): now})
        pipe.zremrangebyscore(key, "-inf", now - max(model.cooldown_window_seconds, MODEL_STATE_HORIZON))
        pipe.expire(key, MODEL_STATE_HORIZON)
        pipe.zrange(key, 0, -1, withscores=True)
        members = pipe.execute()[-1]
        reports = []
        for member, score in members:
            retry_after, failed, _ = member.decode().split(":")
            reports.append((score, int(retry_after) or None, failed == "1"))
        until, reason = cooldown_from(reports, model, time.time())
        if until:
            self.client.set(self.cooldown_key(model.key), json.dumps({"until": until, "reason": reason}), exat=int(until) + 1)

    def take_back(self, applied: list[ledger.AppliedCharge]) -> None:
        """Subtract charges that were counted for a report the ledger did not store (a repeated idempotency key)."""
        self._evalsha(self._take_back, [key for key, _, _, _ in applied],
                      [value for _, bucket, amount, ttl in applied for value in (bucket, -amount, ttl)])

    def drain(self, wait_seconds: float = 5.0) -> int:
        """Write every row waiting in the Redis stream to the database (router.ledger)."""
        return ledger.drain(self.client, self.stream_key, f"{self.prefix}draining", self.take_back, wait_seconds)

    def backlog(self) -> dict:
        return ledger.backlog(self.client, self.stream_key)

    def ensure_built(self, snapshot: PolicySnapshot, now: float) -> None:
        """Rebuild the counters from the ledger unless another process is doing it; then wait for it."""
        lock = f"{self.prefix}rebuilding"
        if self.client.set(lock, "1", nx=True, ex=120):
            try:
                # Another process may have finished a rebuild since this one found the marker missing;
                # rebuilding again would wipe what was reserved after that process's drain.
                if not self.client.exists(self.ready_key):
                    self.rebuild(snapshot, now)
            finally:
                self.client.delete(lock)
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.client.exists(self.ready_key):
            time.sleep(0.05)

    def rebuild(self, snapshot: PolicySnapshot, now: float) -> None:
        """Recount from the database; run it through ensure_built, which keeps deciders waiting meanwhile."""
        self.drain(wait_seconds=60)
        database = DatabaseCounters()
        pipe = self.client.pipeline(transaction=True)
        for quota in snapshot.quotas:
            key = self.quota_key(quota.id)
            pipe.delete(key)
            buckets = database.bucketed_usage(quota, now)
            if buckets:
                pipe.hset(key, mapping={str(b): v for b, v in buckets.items()} | {"total": sum(buckets.values()), "low": min(buckets)})
                pipe.expire(key, self._ttl(quota))
        failures, _ = database.model_reports(list(snapshot.models), now)
        for key, reports in failures.items():
            pipe.delete(self.failures_key(key))
            pipe.zadd(self.failures_key(key), {self._failure_member(retry, failed): at for at, retry, failed in reports})
            pipe.expire(self.failures_key(key), MODEL_STATE_HORIZON)
        for key, state in database.model_states(snapshot.models.values(), now).items():
            pipe.delete(self.cooldown_key(key), self.ratelimit_key(key))
            if state.cooldown_until:
                cool = json.dumps({"until": state.cooldown_until, "reason": state.cooldown_reason})
                pipe.set(self.cooldown_key(key), cool, exat=int(state.cooldown_until) + 1)
            if state.ratelimit:
                expires = max((t for t in (state.ratelimit.requests_reset_at, state.ratelimit.tokens_reset_at) if t), default=0)
                if expires > now:
                    pipe.set(self.ratelimit_key(key), json.dumps(state.ratelimit.__dict__), exat=int(expires) + 1)
        pipe.set(self.ready_key, str(now))
        pipe.execute()
        logger.info("Rebuilt Redis counters for %d quotas from the database ledger", len(snapshot.quotas))

    def invalidate(self) -> None:
        """Make the next reader rebuild the counters from the ledger."""
        self.client.delete(self.ready_key)


def settle_ledger() -> None:
    """Before reading the ledger from the database: write what waits in Redis, if Redis counts."""
    if not settings.REDIS_URL or time.monotonic() < _skip_redis_until:
        return
    try:
        redis_counters().drain()
    except (redis.RedisError, ledger.LedgerBusy) as exc:
        logger.warning("Reading the ledger without the rows still in Redis: %s", exc)


_counters: dict[tuple[str, str], RedisCounters] = {}
_state_lock = threading.Lock()
# Monotonic time until which this process does not try Redis again, and since when it is down.
_skip_redis_until = 0.0
redis_down_since: float | None = None


def redis_counters() -> RedisCounters:
    key = (settings.REDIS_URL, settings.ROUTER_REDIS_PREFIX)
    if key not in _counters:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30)
        _counters[key] = RedisCounters(client, settings.ROUTER_REDIS_PREFIX)
    return _counters[key]


def run_with_counters(operation: Callable[[Counters], T]) -> T:
    """Run `operation` on Redis when configured and reachable, else as ROUTER_REDIS_DOWN says."""
    global _skip_redis_until, redis_down_since
    if not settings.REDIS_URL:
        return operation(DatabaseCounters())
    if time.monotonic() >= _skip_redis_until:
        try:
            counters = redis_counters()
            if redis_down_since is not None:
                # Decisions made on the database during the outage are not in Redis: rebuild.
                counters.invalidate()
            result = operation(counters)
            if redis_down_since is not None:
                logger.warning("Redis is reachable again; counters will be rebuilt from the database")
                redis_down_since = None
            return result
        except redis.RedisError as exc:
            with _state_lock:
                _skip_redis_until = time.monotonic() + 1.0
                if redis_down_since is None:
                    redis_down_since = time.time()
            logger.error("Redis unreachable (%s); ROUTER_REDIS_DOWN=%s", exc.__class__.__name__, settings.ROUTER_REDIS_DOWN)
    if settings.ROUTER_REDIS_DOWN == "refuse":
        raise CountersUnavailable("The shared counters (Redis) cannot be reached and ROUTER_REDIS_DOWN=refuse.")
    return operation(DatabaseCounters())
