"""Counters in Redis: per-quota bucket hashes, checked and reserved by one Lua script per decision.

The scripts (lua/*.lua, each prefixed with lua/quota.lua) count a decision or a usage report and
append its ledger row to a Redis stream in the same atomic step; router.ledger writes that stream to
the database every second. The counters are rebuilt from the database's ledger whenever Redis comes
back empty, after an outage, or when their layout changes (the ready marker is missing).

Every key of one installation carries its hash tag ({sb:<installation>}): on a Redis Cluster they
all live in one slot, so each script, pipeline and lock stays one step on one primary. With
`min_replicas`, a script that admits a decision or counts a report is followed, on the same
connection, by WAIT: a success is answered only once that many replicas hold it (ReplicasBehind).
"""

import json
import logging
import time
import uuid
from collections.abc import Iterable
from importlib import resources

import hiredis
import redis
from django.utils import timezone
from redis.commands.core import Script
from redis.exceptions import NoScriptError, ResponseError

from router import ledger
from router.counters.connections import SLOT_MOVING_STEPS, ClusterConnections, ThreadConnections
from router.counters.cooldown import MODEL_STATE_HORIZON, Cooldown, cooldown
from router.counters.database import DatabaseCounters
from router.counters.marks import keep_mark
from router.engine import ModelState, QuotaReading, RateLimitState, Readings
from router.ratelimits import parse_ratelimit_headers
from router.records import AppliedCharge, DecisionAlreadyReported, DecisionRecord, UsageRecord
from router.snapshot import ModelSpec, PolicySnapshot, QuotaSpec, current_snapshot
from router.windows import bucket_at, bucket_frees_at, bucket_seconds, oldest_counted_bucket
from switchboard.vocabulary import FAILURE_STATUSES

logger = logging.getLogger(__name__)

# How long Redis remembers a counted decision (for the usage report that names it) and an idempotency
# key. Older ones are looked up in the database; an idempotency key repeated later than this is
# still counted once, the repeat being taken back when the ledger is written (router.ledger).
DECISION_MEMORY_SECONDS = 3600
IDEMPOTENCY_MEMORY_SECONDS = 3600
# How many times a script is sent while the cluster moves its slot (router.counters.connections.ClusterConnections).
SLOT_TRIES = SLOT_MOVING_STEPS


class ReplicasBehind(Exception):
    """The primary counted a decision or report, but fewer replicas than REDIS_MIN_REPLICAS acknowledged it in time:
    a failover now could lose it, so it is not answered as a success."""


def installation_prefix(prefix: str, installation: str) -> str:
    """The start of every key of one installation: its hash tag puts them all in one slot of a Redis Cluster."""
    return f"{prefix}{{sb:{installation}}}:"


def _script(name: str) -> str:
    lua = resources.files("router.counters") / "lua"
    return (lua / "quota.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


def _failure_member(retry_after: int | None, failed: bool, caller: str) -> str:
    """A unique member of a model's failures set: '<retry_after>:<1 if failed>:<nonce>:<caller>'."""
    return f"{retry_after or 0}:{int(failed)}:{uuid.uuid4().hex[:8]}:{caller}"


def _cooldown_value(cool: Cooldown) -> str:
    return json.dumps({"until": cool.until, "reason": cool.reason, "by": cool.by})


def _ttl(quota: QuotaSpec) -> int:
    return quota.window_seconds + 2 * bucket_seconds(quota)


def _charge_args(charge, now: float) -> list:
    """A charge as the scripts take it: bucket, amount, soft limit (-1: may use the headroom), hard limit, key lifetime."""
    soft = -1 if charge.soft_limit is None else charge.soft_limit
    return [bucket_at(charge.quota, now), charge.amount, soft, charge.limit, _ttl(charge.quota)]


def persistence(client: redis.Redis) -> str:
    """How a Redis keeps its data across a restart: appendonly, snapshots, none, or unknown (CONFIG not allowed)."""
    try:
        config = client.config_get("appendonly") | client.config_get("save")
    except redis.ResponseError:
        return "unknown"
    if config.get("appendonly") == "yes":
        return "appendonly"
    return "snapshots" if config.get("save") else "none"


class RedisCounters:
    name = "redis"
    lost_at = None
    # Part of every counter key's name: processes that keep the hashes differently never share one,
    # and a new layout starts from a rebuild of the ledger (its ready marker is missing).
    LAYOUT = "v2"

    def __init__(self, client: redis.Redis | redis.RedisCluster, prefix: str, installation: str, *, min_replicas: int = 0,
                 replicas_timeout_ms: int = 200) -> None:
        self.client = client
        # Every key is this installation's own (router.models.Installation), in one hash slot; the registry, shared
        # by every installation on this Redis under the same prefix, says which others keep state here.
        self.installation = installation
        self.prefix = installation_prefix(prefix, installation)
        # Where a release before the hash tag kept this installation's ledger stream, drained until it is empty.
        self.untagged_prefix = f"{prefix}{installation}:"
        self.registry_key = f"{prefix}installations"
        self.ready_key = f"{self.prefix}ready:{self.LAYOUT}"
        self.stream_key = f"{self.prefix}ledger"
        self.mark_key = f"{self.prefix}mark"
        self.min_replicas = min_replicas
        self.replicas_timeout_ms = replicas_timeout_ms
        self._reported_installations: set[str] = set()
        self._read = client.register_script(_script("read"))
        self._reserve = client.register_script(_script("reserve"))
        self._usage = client.register_script(_script("usage"))
        self._take_back = client.register_script(_script("take_back"))
        if isinstance(client, redis.RedisCluster):
            self._connections = ClusterConnections(client, client.keyslot(self.ready_key))
        else:
            self._connections = ThreadConnections(client.connection_pool)

    def quota_key(self, quota_id: int) -> str:
        return f"{self.prefix}quota:{self.LAYOUT}:{quota_id}"

    def cooldown_key(self, model_key: str) -> str:
        return f"{self.prefix}cooldown:{model_key}"

    def failures_key(self, model_key: str) -> str:
        return f"{self.prefix}failures:{model_key}"

    def ratelimit_key(self, model_key: str) -> str:
        return f"{self.prefix}ratelimit:{model_key}"

    def decision_key(self, decision_id: uuid.UUID | str) -> str:
        return f"{self.prefix}decision:{decision_id}"

    def idempotency_key(self, key: str) -> str:
        return f"{self.prefix}idempotency:{key}"


    def read(self, snapshot: PolicySnapshot, quotas: Iterable[QuotaSpec], models: Iterable[ModelSpec], now: float) -> Readings:
        return self.read_and_reserve(snapshot, list(quotas), list(models), now, None)[0]

    def read_and_reserve(self, snapshot: PolicySnapshot, quotas: list[QuotaSpec], models: list[ModelSpec], now: float,
                         choice: DecisionRecord | None) -> tuple[Readings, bool]:
        """Read the counters, and reserve `choice` in the same step if no quota, cooldown or rate limit
        of its model stands in its way; returns (readings, reserved)."""
        state_keys = [k for m in models for k in (self.cooldown_key(m.key), self.ratelimit_key(m.key))]
        keys = [self.quota_key(q.id) for q in quotas] + state_keys + [self.ready_key, self.stream_key]
        args: list = [len(quotas)] + [oldest_counted_bucket(q, now) for q in quotas]
        if choice:
            positions = {q.id: index for index, q in enumerate(quotas, start=1)}
            args += [[m.key for m in models].index(choice.model_key) + 1, len(choice.charges)]
            for charge in choice.charges:
                args += [positions[charge.quota.id], *_charge_args(charge, now)]
            keys.append(self.decision_key(choice.id))
            args += [choice.row(), choice.memory(), DECISION_MEMORY_SECONDS]
        else:
            keys.append(self.decision_key(""))
            args.append(0)
        replicas = self.min_replicas if choice else 0
        ready, reserved, *values = self._evalsha(self._read, keys, args, replicas)
        if not ready:
            self.ensure_built(snapshot, now)
            ready, reserved, *values = self._evalsha(self._read, keys, args, replicas)

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
                    cooldown_until=cool.get("until"), cooldown_reason=cool.get("reason", ""), cooldown_by=cool.get("by", ""),
                    ratelimit=RateLimitState(**json.loads(ratelimit)) if ratelimit else None,
                )
        return readings, bool(reserved)

    def _evalsha(self, script: Script, keys: list, args: list, replicas: int = 0, tries: int = SLOT_TRIES):
        """Run a registered script on this thread's own connection (router.counters.connections), then, when
        `replicas`, WAIT on the same connection for that many replicas to hold what it wrote (else ReplicasBehind).

        Script.__call__'s isinstance check on a typing Protocol, taking a connection from redis-py's pool and giving
        it back around each call, and redis-py's packing of each argument before hiredis packs them all, are
        measurable on the hot path (docs/performance.md).
        """
        connection = self._connections.get()
        try:
            if not replicas:
                connection.send_packed_command([hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))])
                return connection.read_response()
            answer, acknowledged = self._evalsha_and_wait(connection, script, keys, args, replicas)
        except NoScriptError:
            connection.send_command("SCRIPT", "LOAD", script.script)
            connection.read_response()
            return self._evalsha(script, keys, args, replicas, tries)
        except BaseException as exc:
            connection.disconnect()  # the reply may be half read: the next call starts on a new connection
            if tries > 1 and self._connections.follow(exc):
                return self._evalsha(script, keys, args, replicas, tries - 1)
            raise
        if acknowledged < replicas:
            raise ReplicasBehind(f"{acknowledged} of the {replicas} Redis replicas REDIS_MIN_REPLICAS asks for acknowledged the "
                                 f"count within {self.replicas_timeout_ms} ms. Retry in a second.")
        return answer

    def _evalsha_and_wait(self, connection, script: Script, keys: list, args: list, replicas: int) -> tuple:
        """EVALSHA and WAIT in one round trip: (the script's answer, how many replicas acknowledged its writes)."""
        connection.send_packed_command(connection.pack_commands([
            ("EVALSHA", script.sha, len(keys), *keys, *args), ("WAIT", replicas, self.replicas_timeout_ms)]))
        try:
            answer = connection.read_response()
        except ResponseError:
            connection.read_response()  # WAIT's reply: the connection stays in step
            raise
        return answer, connection.read_response()

    def reserve(self, decision: DecisionRecord, now: float) -> bool:
        keys, args = [], []
        for charge in decision.charges:
            keys.append(self.quota_key(charge.quota.id))
            args += [oldest_counted_bucket(charge.quota, now), *_charge_args(charge, now)]
        keys += [self.ready_key, self.stream_key, self.decision_key(decision.id)]
        args += [decision.row(), decision.memory(), DECISION_MEMORY_SECONDS]
        answer = self._evalsha(self._reserve, keys, args, self.min_replicas)
        if answer == -1:
            self.ensure_built(current_snapshot(), now)
        return answer == 0

    def store_refusal(self, decision: DecisionRecord) -> None:
        """Append the refusal's ledger row, and remember it as a counted decision is remembered, so that a report
        naming it is told it was a refusal before the drain has written it."""
        key = self.decision_key(decision.id)
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(self.stream_key, {"kind": "decision", "row": decision.row()})
        pipe.hset(key, "decision", decision.memory())
        pipe.expire(key, DECISION_MEMORY_SECONDS)
        pipe.execute()

    def lookup(self, idempotency_key: str | None, decision_id: uuid.UUID | None) -> tuple[UsageRecord | None, DecisionRecord | None]:
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
        existing = UsageRecord.from_row(json.loads(earlier)) if earlier else None
        if not decision_id:
            return existing, None
        if memory:
            return existing, DecisionRecord.from_memory(decision_id, memory)
        # Not remembered: older than the memory, so the drain has written it long ago, or unknown. Never drained
        # here: a report must not wait for another process's drain (router.usage answers an unknown one 404).
        return existing, DatabaseCounters().lookup(None, decision_id)[1]

    def record_usage(self, model: ModelSpec, usage: UsageRecord, decision: DecisionRecord | None,
                     charges: list[tuple[QuotaSpec, int, float]]) -> tuple[UsageRecord, bool]:
        now = usage.created_at.timestamp()
        applied = [(self.quota_key(q.id), bucket_at(q, at), amount, _ttl(q)) for q, amount, at in charges]
        limits = parse_ratelimit_headers(usage.ratelimit_headers, now) if usage.ratelimit_headers else None
        expires = (limits.resets_at or now + 60) if limits else 0
        keys = [charge[0] for charge in applied] + [
            self.ready_key, self.stream_key, self.idempotency_key(usage.idempotency_key or ""),
            self.decision_key(decision.id if decision else ""), self.ratelimit_key(model.key),
        ]
        args = [len(applied)]
        for _, bucket, amount, ttl in applied:
            args += [bucket, amount, ttl]
        args += [
            usage.row(applied),
            IDEMPOTENCY_MEMORY_SECONDS if usage.idempotency_key else "",
            DECISION_MEMORY_SECONDS if decision else "",
            json.dumps(limits.__dict__) if limits and expires > now else "",
            int(expires) + 1,
        ]
        while True:
            answer = self._evalsha(self._usage, keys, args, self.min_replicas)
            if answer[0] != -1:
                break
            self.ensure_built(current_snapshot(), now)
        if answer[0] == 1:
            return UsageRecord.from_row(json.loads(answer[1])), False
        if answer[0] == 2:
            raise DecisionAlreadyReported
        if usage.status in FAILURE_STATUSES or usage.retry_after:
            self._note_failure(model, usage)
        return usage, True

    def _note_failure(self, model: ModelSpec, usage: UsageRecord) -> None:
        """Remember a failed call (or a retry-after) and put the model in cooldown when it has failed often enough."""
        now = usage.created_at.timestamp()
        key = self.failures_key(model.key)
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(key, {_failure_member(usage.retry_after, usage.status in FAILURE_STATUSES, usage.caller): now})
        pipe.zremrangebyscore(key, "-inf", now - max(model.cooldown_window_seconds, MODEL_STATE_HORIZON))
        pipe.expire(key, MODEL_STATE_HORIZON)
        pipe.zrange(key, 0, -1, withscores=True)
        members = pipe.execute()[-1]
        reports = []
        for member, score in members:
            retry_after, failed, _, caller = member.decode().split(":", 3)
            reports.append((score, int(retry_after) or None, failed == "1", caller))
        if cool := cooldown(reports, model, time.time()):
            self.client.set(self.cooldown_key(model.key), _cooldown_value(cool), exat=int(cool.until) + 1)

    def take_back(self, applied: list[AppliedCharge]) -> None:
        """Subtract charges that were counted for a report the ledger did not store (a repeated idempotency key)."""
        self._evalsha(self._take_back, [key for key, _, _, _ in applied],
                      [value for _, bucket, amount, ttl in applied for value in (bucket, -amount, ttl)])

    def drain(self, wait_seconds: float = 5.0, check_mark: bool = True) -> int:
        """Write every row waiting in the Redis stream to the database (router.ledger), then check that Redis still
        holds what it held (router.counters.marks): if not, the counters are rebuilt from the ledger.

        A rebuild leaves the check to the next drain: deciders wait for it, and it rebuilds anyway."""
        self._register()
        started = timezone.now()
        moved = ledger.drain(self.client, self.stream_key, f"{self.prefix}draining", self.take_back, wait_seconds)
        untagged = f"{self.untagged_prefix}ledger"
        if self.client.exists(untagged):  # rows a process of the release before the hash tag accepted
            moved += ledger.drain(self.client, untagged, f"{self.untagged_prefix}draining", self.take_back, wait_seconds)
        # Read after the drain: a Redis that lost its data at any time before this read has lost the mark too.
        if check_mark and keep_mark(self.client, self.mark_key, self.prefix, self.client.get(self.mark_key), started):
            self.invalidate()
        return moved

    def _register(self) -> None:
        """Note in the registry that this installation is alive; log, once, every other one found there."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.registry_key, self.installation, int(time.time()))
        pipe.hgetall(self.registry_key)
        new = set(self.other_installations(pipe.execute()[1])) - self._reported_installations
        if new:
            logger.warning("Redis also holds the counters of other installations (%s): another database shares this "
                           "Redis and prefix. Each keeps to its own counters and ledger.", ", ".join(sorted(new)))
            self._reported_installations |= new

    def other_installations(self, registry: dict[bytes, bytes] | None = None) -> dict[str, int]:
        """Other installations that drained their ledger on this Redis in the last day: id -> when (epoch seconds)."""
        registry = self.client.hgetall(self.registry_key) if registry is None else registry
        since = time.time() - 86_400
        return {key.decode(): int(seen) for key, seen in registry.items()
                if key.decode() != self.installation and int(seen) >= since}

    def persistence(self) -> str:
        return persistence(self.client)

    def backlog(self, now: float | None = None) -> dict:
        return ledger.backlog(self.client, self.stream_key, now)

    def ensure_built(self, snapshot: PolicySnapshot, now: float) -> None:
        """Rebuild the counters from the ledger unless another process is doing it; then wait for it."""
        lock = self.client.lock(f"{self.prefix}rebuilding", timeout=120)
        if lock.acquire(blocking=False):
            try:
                # Another process may have finished a rebuild since this one found the marker missing;
                # rebuilding again would wipe what was reserved after that process's drain.
                if not self.client.exists(self.ready_key):
                    self.rebuild(snapshot, now)
            finally:
                ledger.release(lock)
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.client.exists(self.ready_key):
            time.sleep(0.05)

    def rebuild(self, snapshot: PolicySnapshot, now: float) -> None:
        """Recount from the database; run it through ensure_built, which keeps deciders waiting meanwhile."""
        self.drain(wait_seconds=60, check_mark=False)
        database = DatabaseCounters()
        pipe = self.client.pipeline(transaction=True)
        for quota in snapshot.quotas:
            key = self.quota_key(quota.id)
            pipe.delete(key)
            buckets = database.bucketed_usage(quota, now)
            if buckets:
                pipe.hset(key, mapping={str(b): v for b, v in buckets.items()} | {"total": sum(buckets.values()), "low": min(buckets)})
                pipe.expire(key, _ttl(quota))
        failures, _ = database.model_reports(list(snapshot.models), now)
        for key, reports in failures.items():
            pipe.delete(self.failures_key(key))
            pipe.zadd(self.failures_key(key), {_failure_member(retry, failed, caller): at for at, retry, failed, caller in reports})
            pipe.expire(self.failures_key(key), MODEL_STATE_HORIZON)
        for key, state in database.model_states(snapshot.models.values(), now).items():
            pipe.delete(self.cooldown_key(key), self.ratelimit_key(key))
            if state.cooldown_until:
                cool = Cooldown(state.cooldown_until, state.cooldown_reason, state.cooldown_by)
                pipe.set(self.cooldown_key(key), _cooldown_value(cool), exat=int(state.cooldown_until) + 1)
            if state.ratelimit:
                expires = state.ratelimit.resets_at or 0
                if expires > now:
                    pipe.set(self.ratelimit_key(key), json.dumps(state.ratelimit.__dict__), exat=int(expires) + 1)
        pipe.set(self.ready_key, str(now))
        pipe.execute()
        logger.info("Rebuilt Redis counters for %d quotas from the database ledger", len(snapshot.quotas))

    def invalidate(self) -> None:
        """Make the next reader rebuild the counters from the ledger."""
        self.client.delete(self.ready_key)
