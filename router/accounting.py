"""Quota counters shared by every web process: one interface, a Redis and a database backend.

The ledger in the database is the source of truth: every counted decision (holding its estimate,
replaced by the actual usage when a report names it) and every usage report without a decision.
The database backend counts straight from that ledger, under row locks. The Redis backend keeps
the same sums in per-window buckets (router.windows), checks and reserves with one Lua script, and
is rebuilt from the ledger whenever Redis comes back empty or after an outage.

If Redis cannot be reached, ROUTER_REDIS_DOWN says what happens: `db` counts on the database
(globally, never per process) and `refuse` answers 503; /api/v1/health reports it either way.
"""

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Min, Q, Sum

from providers.models import Quota
from router.engine import Charge, ModelState, QuotaReading, RateLimitState, Readings, admits, amount_for
from router.models import Decision, Outcome, UsageEvent
from router.ratelimits import parse_ratelimit_headers
from router.snapshot import COST_SCALE, ModelSpec, PolicySnapshot, QuotaSpec
from router.windows import bucket_at, bucket_frees_at, bucket_seconds, bucket_start, oldest_counted_bucket

logger = logging.getLogger(__name__)

COUNTED_OUTCOMES = (Outcome.PRIMARY, Outcome.FALLBACK)
FAILURE_STATUSES = (UsageEvent.Status.RATE_LIMITED, UsageEvent.Status.ERROR)
# How far back the ledger is read for cooldowns and rate-limit headers.
MODEL_STATE_HORIZON = 3600
T = TypeVar("T")


class CountersUnavailable(Exception):
    """Redis is down and ROUTER_REDIS_DOWN=refuse."""


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


class Counters(Protocol):
    name: str

    def read(self, snapshot: PolicySnapshot, quotas: Iterable[QuotaSpec], models: Iterable[ModelSpec], now: float) -> Readings: ...

    def reserve(self, charges: list[Charge], now: float, commit: Callable[[], T]) -> T | None: ...

    def apply_usage(self, model: ModelSpec, event: UsageEvent, estimate: Decision | None) -> None: ...


class DatabaseCounters:
    """Counts straight from the ledger; quota rows are locked while a decision checks and stores."""

    name = "database"

    @staticmethod
    def _ledger(quota: QuotaSpec, start: float, end: float | None = None):
        decisions = Decision.objects.filter(outcome__in=COUNTED_OUTCOMES, created_at__gte=_dt(start))
        events = UsageEvent.objects.filter(decision__isnull=True, created_at__gte=_dt(start))
        if end is not None:
            decisions, events = decisions.filter(created_at__lt=_dt(end)), events.filter(created_at__lt=_dt(end))
        if quota.model_keys:
            decisions, events = decisions.filter(model_key__in=quota.model_keys), events.filter(model_key__in=quota.model_keys)
        else:
            decisions, events = decisions.filter(provider_slug=quota.provider), events.filter(provider_slug=quota.provider)
        return decisions, events

    @staticmethod
    def _aggregate(queryset, metric: str) -> tuple[int, datetime | None]:
        expression = {
            "requests": Count("pk"),
            "tokens": Sum(F("input_tokens") + F("output_tokens")),
            "input_tokens": Sum("input_tokens"),
            "output_tokens": Sum("output_tokens"),
            "cost_usd": Sum("cost_usd"),
        }[metric]
        row = queryset.aggregate(total=expression, oldest=Min("created_at"))
        total = row["total"] or 0
        return (round(total * COST_SCALE) if metric == "cost_usd" else int(total)), row["oldest"]

    def usage_between(self, quota: QuotaSpec, start: float, end: float | None = None) -> tuple[int, datetime | None]:
        """The quota's metric summed over the ledger from start (to end), and the oldest entry counted."""
        total, oldest = 0, None
        for queryset in self._ledger(quota, start, end):
            amount, first = self._aggregate(queryset, quota.metric)
            total += amount
            if first and (oldest is None or first < oldest):
                oldest = first
        return total, oldest

    def _reading(self, quota: QuotaSpec, now: float) -> QuotaReading:
        used, oldest = self.usage_between(quota, bucket_start(quota, oldest_counted_bucket(quota, now)))
        frees_at = bucket_frees_at(quota, bucket_at(quota, oldest.timestamp())) if oldest and used > 0 else None
        return QuotaReading(used=used, frees_at=frees_at)

    def bucketed_usage(self, quota: QuotaSpec, now: float) -> dict[int, int]:
        """The quota's counted usage per bucket, as the Redis backend keeps it."""
        buckets: dict[int, int] = {}
        decisions, events = self._ledger(quota, bucket_start(quota, oldest_counted_bucket(quota, now)))
        fields = ("created_at", "input_tokens", "output_tokens", "cost_usd")
        for queryset in (decisions, events):
            for created_at, input_tokens, output_tokens, cost in queryset.values_list(*fields).iterator():
                if quota.metric == "cost_usd":
                    amount = round(cost * COST_SCALE)
                else:
                    amount = amount_for(quota, None, input_tokens, output_tokens)
                bucket = bucket_at(quota, created_at.timestamp())
                buckets[bucket] = buckets.get(bucket, 0) + amount
        return buckets

    @staticmethod
    def model_reports(keys: list[str], now: float) -> tuple[dict[str, list[tuple[float, int | None, bool]]], dict[str, RateLimitState]]:
        """Per model, its recent failure and retry-after reports as (time, retry_after, failed), and its latest rate limits."""
        rows = (
            UsageEvent.objects.filter(model_key__in=keys, created_at__gte=_dt(now - MODEL_STATE_HORIZON))
            .filter(Q(status__in=FAILURE_STATUSES) | Q(retry_after__isnull=False) | ~Q(ratelimit_headers={}))
            .order_by("created_at")
            .values_list("model_key", "created_at", "status", "retry_after", "ratelimit_headers")
        )
        failures: dict[str, list[tuple[float, int | None, bool]]] = {}
        limits: dict[str, RateLimitState] = {}
        for key, created_at, status, retry_after, headers in rows:
            at = created_at.timestamp()
            if status in FAILURE_STATUSES or retry_after:
                failures.setdefault(key, []).append((at, retry_after, status in FAILURE_STATUSES))
            parsed = parse_ratelimit_headers(headers, at) if headers else None
            if parsed:
                limits[key] = parsed
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

    def reserve(self, charges: list[Charge], now: float, commit: Callable[[], T]) -> T | None:
        with transaction.atomic():
            ids = sorted({charge.quota.id for charge in charges})
            if ids:
                # Row locks serialise deciders on PostgreSQL; SQLite runs IMMEDIATE transactions (settings).
                list(Quota.objects.select_for_update().filter(id__in=ids).order_by("id").values_list("id", flat=True))
            for charge in charges:
                if not admits(charge, self._reading(charge.quota, now).used):
                    return None
            return commit()

    def apply_usage(self, model: ModelSpec, event: UsageEvent, estimate: Decision | None) -> None:
        """Nothing to do: the ledger rows the caller stored are the counters."""


class RedisCounters:
    """Per-quota bucket hashes in Redis; checks and reservations are one atomic Lua script."""

    name = "redis"

    # KEYS: one hash per quota. ARGV, six per key: oldest counted bucket, bucket to add to, amount,
    # soft limit (-1: may use the headroom), hard limit, key lifetime. Returns 0 when reserved, else
    # the 1-based index of the first quota that has no room.
    RESERVE = """
    local n = #KEYS
    for i = 1, n do
      local base = (i - 1) * 6
      local oldest = tonumber(ARGV[base + 1])
      local amount = tonumber(ARGV[base + 3])
      local soft = tonumber(ARGV[base + 4])
      local limit = tonumber(ARGV[base + 5])
      local fields = redis.call('HGETALL', KEYS[i])
      local used = 0
      for j = 1, #fields, 2 do
        if tonumber(fields[j]) >= oldest then
          used = used + tonumber(fields[j + 1])
        else
          redis.call('HDEL', KEYS[i], fields[j])
        end
      end
      if used + amount > limit or (soft >= 0 and used >= soft) then
        return i
      end
    end
    for i = 1, n do
      local base = (i - 1) * 6
      redis.call('HINCRBY', KEYS[i], ARGV[base + 2], ARGV[base + 3])
      redis.call('EXPIRE', KEYS[i], ARGV[base + 6])
    end
    return 0
    """

    # KEYS: the quota hashes, then the models' cooldown and rate-limit keys, then the ready marker.
    # ARGV: the number of quota hashes, then each one's oldest counted bucket. Returns the marker's
    # existence, then per quota its counted usage and its oldest bucket holding usage (-1 if none),
    # then the state keys' values. Summing here keeps the reply small.
    READ = """
    local quotas = tonumber(ARGV[1])
    local out = {redis.call('EXISTS', KEYS[#KEYS])}
    for i = 1, quotas do
      local oldest = tonumber(ARGV[i + 1])
      local fields = redis.call('HGETALL', KEYS[i])
      local used, first = 0, -1
      for j = 1, #fields, 2 do
        local bucket, value = tonumber(fields[j]), tonumber(fields[j + 1])
        if bucket >= oldest then
          used = used + value
          if value > 0 and (first < 0 or bucket < first) then first = bucket end
        end
      end
      out[#out + 1] = used
      out[#out + 1] = first
    end
    for i = quotas + 1, #KEYS - 1 do
      out[#out + 1] = redis.call('GET', KEYS[i])
    end
    return out
    """

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._read = client.register_script(self.READ)
        self._reserve = client.register_script(self.RESERVE)

    def quota_key(self, quota_id: int) -> str:
        return f"{self.prefix}quota:{quota_id}"

    def cooldown_key(self, model_key: str) -> str:
        return f"{self.prefix}cooldown:{model_key}"

    def failures_key(self, model_key: str) -> str:
        return f"{self.prefix}failures:{model_key}"

    def ratelimit_key(self, model_key: str) -> str:
        return f"{self.prefix}ratelimit:{model_key}"

    @property
    def ready_key(self) -> str:
        return f"{self.prefix}ready"

    @staticmethod
    def _failure_member(retry_after: int | None, failed: bool) -> str:
        """A unique member of a model's failures set: '<retry_after>:<1 if failed>:<nonce>'."""
        return f"{retry_after or 0}:{int(failed)}:{uuid.uuid4().hex[:8]}"

    @staticmethod
    def _ttl(quota: QuotaSpec) -> int:
        return quota.window_seconds + 2 * bucket_seconds(quota)

    def read(self, snapshot: PolicySnapshot, quotas: Iterable[QuotaSpec], models: Iterable[ModelSpec], now: float) -> Readings:
        quotas, models = list(quotas), list(models)
        state_keys = [k for m in models for k in (self.cooldown_key(m.key), self.ratelimit_key(m.key))]
        keys = [self.quota_key(q.id) for q in quotas] + state_keys + [self.ready_key]
        args = [len(quotas)] + [oldest_counted_bucket(q, now) for q in quotas]
        ready, *values = self._read(keys=keys, args=args)
        if not ready:
            self.ensure_built(snapshot, now)
            _, *values = self._read(keys=keys, args=args)

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
        return readings

    def reserve(self, charges: list[Charge], now: float, commit: Callable[[], T]) -> T | None:
        if charges:
            keys, args = [], []
            for charge in charges:
                quota = charge.quota
                keys.append(self.quota_key(quota.id))
                args += [oldest_counted_bucket(quota, now), bucket_at(quota, now), charge.amount,
                         -1 if charge.soft_limit is None else charge.soft_limit, charge.limit, self._ttl(quota)]
            if self._reserve(keys=keys, args=args) != 0:
                return None
        try:
            return commit()
        except Exception:
            self._add(charges, now, sign=-1)
            raise

    def _add(self, charges: list[Charge], at: float, sign: int = 1) -> None:
        pipe = self.client.pipeline(transaction=True)
        for charge in charges:
            if charge.amount:
                pipe.hincrby(self.quota_key(charge.quota.id), str(bucket_at(charge.quota, at)), sign * charge.amount)
                pipe.expire(self.quota_key(charge.quota.id), self._ttl(charge.quota))
        pipe.execute()

    def apply_usage(self, model: ModelSpec, event: UsageEvent, estimate: Decision | None) -> None:
        now = event.created_at.timestamp()
        if estimate is not None:
            # Replace the estimate counted at decision time with the actual usage, in the decision's bucket.
            at = estimate.created_at.timestamp()
            charges = [
                Charge(q, amount_for(q, model, event.input_tokens, event.output_tokens, requests=0)
                       - amount_for(q, model, estimate.input_tokens, estimate.output_tokens, requests=0), None)
                for q in model.quotas if bucket_at(q, at) >= oldest_counted_bucket(q, now)
            ]
        else:
            at = now
            charges = [Charge(q, amount_for(q, model, event.input_tokens, event.output_tokens), None) for q in model.quotas]
        self._add(charges, at)

        if event.status in FAILURE_STATUSES or event.retry_after:
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
        limits = parse_ratelimit_headers(event.ratelimit_headers, now) if event.ratelimit_headers else None
        if limits:
            expires = max((t for t in (limits.requests_reset_at, limits.tokens_reset_at) if t), default=now + 60)
            if expires > time.time():
                self.client.set(self.ratelimit_key(model.key), json.dumps(limits.__dict__), exat=int(expires) + 1)

    def ensure_built(self, snapshot: PolicySnapshot, now: float) -> None:
        """Rebuild the counters from the ledger unless another process is doing it; then wait for it."""
        lock = f"{self.prefix}rebuilding"
        if self.client.set(lock, "1", nx=True, ex=120):
            try:
                self.rebuild(snapshot, now)
            finally:
                self.client.delete(lock)
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.client.exists(self.ready_key):
            time.sleep(0.05)

    def rebuild(self, snapshot: PolicySnapshot, now: float) -> None:
        database = DatabaseCounters()
        pipe = self.client.pipeline(transaction=True)
        for quota in snapshot.quotas:
            key = self.quota_key(quota.id)
            pipe.delete(key)
            buckets = database.bucketed_usage(quota, now)
            if buckets:
                pipe.hset(key, mapping={str(b): v for b, v in buckets.items()})
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


def redis_client() -> redis.Redis:
    return redis_counters().client


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
