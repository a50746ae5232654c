"""Quota counters shared by every web process: what a backend offers, and which backend counts now.

Two backends keep the same counts: `RedisCounters` (router.counters.redis) when REDIS_URL is set,
`DatabaseCounters` (router.counters.database) otherwise. Both count globally, never per process.

If Redis cannot be reached, ROUTER_REDIS_DOWN says what happens: `db` counts on the database and
`refuse` answers 503 (usage reports are still stored); /api/v1/health says so either way. A process
that lost Redis tries it again a second later; when it answers again, its counters are rebuilt
from the database's ledger, which holds what was counted there meanwhile. The callers
(router.decisions, router.usage, router.selectors) take `current()` and, when the Redis backend
raises `RedisUnreachable` in the middle of an operation, run it again on `fail_over(exc)`.
"""

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Protocol

from django.conf import settings
from django.core.signals import setting_changed
from redis.exceptions import AskError, ClusterDownError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router import ledger
from router.counters.connections import client_for, is_cluster
from router.counters.database import DatabaseCounters
from router.counters.redis import RedisCounters, installation_prefix
from router.engine import Readings
from router.ledger import LedgerBusy
from router.models import Installation
from router.records import DecisionRecord, UsageRecord
from router.snapshot import ModelSpec, PolicySnapshot, QuotaSpec

logger = logging.getLogger(__name__)

# What the Redis backend raises when Redis cannot be reached (a refused or dropped connection, a timeout, a cluster
# without a primary for the slot, or one still moving it after the wait): the caller fails over. A command or script
# error (redis.ResponseError) is a bug and reaches the caller as a 500; a pool with no free connection raises
# connections.PoolExhausted: a fault on this side, never a failover.
RedisUnreachable = (RedisConnectionError, RedisTimeoutError, ClusterDownError, TryAgainError, AskError)
# How long a process that lost Redis counts as ROUTER_REDIS_DOWN says before trying Redis again.
RETRY_SECONDS = 1.0


class CountersUnavailable(Exception):
    """Redis cannot be reached and ROUTER_REDIS_DOWN=refuse."""


class LedgerIncomplete(Exception):
    """The database cannot be brought up to date with the rows waiting in Redis right now."""


class Counters(Protocol):
    """What both backends offer (router.counters.redis.RedisCounters, router.counters.database.DatabaseCounters)."""

    name: str
    # While Redis is down, when it was lost: what it accepted and had not yet written is unknown (router.counters.database).
    lost_at: float | None

    def read(self, snapshot: PolicySnapshot, quotas: Iterable[QuotaSpec], models: Iterable[ModelSpec], now: float) -> Readings:
        """The quotas' usage and the models' cooldown and rate-limit state at `now`."""

    def read_and_reserve(self, snapshot: PolicySnapshot, quotas: list[QuotaSpec], models: list[ModelSpec], now: float,
                         choice: DecisionRecord | None) -> tuple[Readings, bool]:
        """Read, and reserve `choice` in the same step where the backend can and nothing stands in its way."""

    def reserve(self, decision: DecisionRecord, now: float) -> bool:
        """Count the decision's charges and store it, if every quota still has room; else change nothing."""

    def store_refusal(self, decision: DecisionRecord) -> None:
        """Store a decision that chose nothing."""

    def lookup(self, idempotency_key: str | None, decision_id: uuid.UUID | None) -> tuple[UsageRecord | None, DecisionRecord | None]:
        """The report stored under the idempotency key, and the decision a report names."""

    def record_usage(self, model: ModelSpec, usage: UsageRecord, decision: DecisionRecord | None,
                     charges: list[tuple[QuotaSpec, int, float]]) -> tuple[UsageRecord, bool]:
        """Count the report's charges (quota, amount, counted at) and store it: (the stored report, True),
        or (the earlier report, False) for a known idempotency key."""


class _Outage:
    """This process's view of Redis: since when it is down, and when to try it again."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.since: float | None = None
        self.retry_at = 0.0
        self.clock = time.monotonic  # what measures the wait before Redis is tried again (tests give it another)

    def begin(self, lost_at: float | None = None) -> None:
        """Redis failed a call; `lost_at` (default now) is when, if known to be earlier."""
        with self.lock:
            self.retry_at = self.clock() + RETRY_SECONDS
            if self.since is None:
                self.since = time.time() if lost_at is None else lost_at

    def end(self) -> None:
        with self.lock:
            self.since, self.retry_at = None, 0.0


outage = _Outage()
_redis: dict[tuple, RedisCounters] = {}
# The counters the current settings name (redis_counters), found once.
_in_use: list[RedisCounters] = []
_installation: list[str] = []


def installation_id() -> str:
    """This database's installation id (router.models.Installation), read once per process."""
    if not _installation:
        _installation.append(Installation.current().uuid.hex)
    return _installation[0]


def forget_installation() -> None:
    """Read the installation id again on next use (after the database was recreated, as tests do)."""
    _installation.clear()
    _in_use.clear()


def redis_counters() -> RedisCounters:
    """This process's Redis counters; the first call finds out whether REDIS_URL names a cluster (REDIS_CLUSTER unset),
    and raises RedisUnreachable when it cannot."""
    if _in_use:
        return _in_use[0]
    key = (settings.REDIS_URL, tuple(settings.REDIS_SENTINELS), settings.REDIS_SENTINEL_MASTER, settings.REDIS_CLUSTER,
           settings.REDIS_MIN_REPLICAS, settings.REDIS_MIN_REPLICAS_TIMEOUT_MS, settings.ROUTER_REDIS_PREFIX, installation_id())
    if key not in _redis:
        cluster = not settings.REDIS_SENTINELS and is_cluster(settings.REDIS_URL, settings.REDIS_CLUSTER)
        replicas_wait = settings.REDIS_MIN_REPLICAS_TIMEOUT_MS / 1000 if settings.REDIS_MIN_REPLICAS else 0
        client = client_for(settings.REDIS_URL, max_connections=settings.ROUTER_REDIS_MAX_CONNECTIONS,
                            timeout=settings.ROUTER_REDIS_POOL_TIMEOUT, sentinels=settings.REDIS_SENTINELS,
                            sentinel_master=settings.REDIS_SENTINEL_MASTER, sentinel_password=settings.REDIS_SENTINEL_PASSWORD,
                            cluster=cluster, read_timeout=0.5 + replicas_wait)
        _redis[key] = RedisCounters(client, settings.ROUTER_REDIS_PREFIX, key[-1], min_replicas=settings.REDIS_MIN_REPLICAS,
                                    replicas_timeout_ms=settings.REDIS_MIN_REPLICAS_TIMEOUT_MS)
    _in_use.append(_redis[key])
    return _redis[key]


def _settings_changed(setting: str, **kwargs) -> None:
    """A test changed the settings: the counters in use are found again from them (reading eight settings on every
    call costs the hot path more than its Redis round trip's packing)."""
    if setting.startswith(("REDIS_", "ROUTER_REDIS_")):
        _in_use.clear()


setting_changed.connect(_settings_changed)


def mark_store() -> str:
    """Where this installation's Redis data-loss mark is kept in the database (router.counters.marks), known without
    asking Redis."""
    return installation_prefix(settings.ROUTER_REDIS_PREFIX, installation_id())


def _while_down(refuse: bool) -> Counters:
    if refuse and settings.ROUTER_REDIS_DOWN == "refuse":
        raise CountersUnavailable("The shared counters (Redis) cannot be reached and ROUTER_REDIS_DOWN=refuse.")
    return DatabaseCounters(lost_at=outage.since)


def current(*, refuse: bool = True) -> Counters:
    """The counters to use now: Redis when configured and not known to be down, else as ROUTER_REDIS_DOWN says.

    `refuse=False` (usage reports) counts on the database rather than refusing.
    """
    if not settings.REDIS_URL:
        return DatabaseCounters()
    if outage.since is not None:
        if outage.clock() < outage.retry_at:
            return _while_down(refuse)
        try:
            counters = redis_counters()
            # What was counted on the database during the outage is not in Redis: rebuild from the ledger.
            counters.invalidate()
        except RedisUnreachable as exc:
            return fail_over(exc, refuse=refuse)
        logger.warning("Redis is reachable again; counters will be rebuilt from the database")
        outage.end()
        return counters
    try:
        return redis_counters()
    except RedisUnreachable as exc:  # the first call of this process, which asks the server whether it is a cluster
        return fail_over(exc, refuse=refuse)


def fail_over(exc: Exception, *, refuse: bool = True) -> Counters:
    """The counters to finish an operation on after Redis failed it."""
    outage.begin()
    logger.error("Redis unreachable (%s); ROUTER_REDIS_DOWN=%s", exc.__class__.__name__, settings.ROUTER_REDIS_DOWN)
    return _while_down(refuse)


def read(snapshot: PolicySnapshot, quotas: Iterable[QuotaSpec], models: Iterable[ModelSpec], now: float) -> Readings:
    """The counters' readings at `now`, from whichever backend counts."""
    backend = current()
    try:
        return backend.read(snapshot, quotas, models, now)
    except RedisUnreachable as exc:
        return fail_over(exc).read(snapshot, quotas, models, now)


# How long the audit waits for another drainer; longer than a crashed drainer's lock lives (router.ledger).
FLUSH_WAIT_SECONDS = ledger.LOCK_MILLISECONDS / 1000 + 1


def flush_ledger() -> None:
    """Write what waits in the Redis stream to the database now, if Redis counts; raises LedgerIncomplete
    when that cannot be done (Redis unreachable, or another drainer holding the stream too long).

    Only a read that must hold every decision answered before it calls this (the audit,
    /api/v1/decisions); pages and scrapes read what the drain task has written, a second behind.
    """
    if not settings.REDIS_URL:
        return
    if outage.since is not None and outage.clock() < outage.retry_at:
        raise LedgerIncomplete("Redis cannot be reached: decisions it accepted before it went may not be in the database yet.")
    try:
        redis_counters().drain(wait_seconds=FLUSH_WAIT_SECONDS)
    except RedisUnreachable as exc:
        raise LedgerIncomplete(f"Redis cannot be reached ({exc.__class__.__name__}): decisions it accepted may not be "
                               "in the database yet.") from exc
    except LedgerBusy as exc:
        raise LedgerIncomplete(f"{exc} Decisions waiting in Redis may not be in the database yet.") from exc
