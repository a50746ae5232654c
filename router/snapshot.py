"""An immutable in-memory copy of the routing policy, so that a decision touches no ORM query.

Each process keeps one snapshot and checks at most every ROUTER_POLICY_RECHECK_SECONDS whether the
policy version or the last availability check changed; if so it rebuilds it (a handful of queries).
"""

import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Max

from providers.burndown import default_burndown_rate
from providers.models import LLMModel, Provider, Quota
from router import database_outage
from router.database_outage import DATABASE_ERRORS, DatabaseUnavailable
from router.models import Category, Policy, Route, Tier
from switchboard.vocabulary import Metric

# Counters are integers; costs are counted in micro-dollars.
COST_SCALE = 1_000_000


@dataclass(frozen=True)
class QuotaSpec:
    id: int
    provider: str
    provider_kind: str
    name: str
    metric: str
    window: str
    window_seconds: int
    reset: str
    limit: int
    soft_limit: int
    soft_limit_ratio: float
    source: str
    model_keys: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.name}"


@dataclass(frozen=True)
class ModelSpec:
    key: str
    provider: str
    provider_kind: str
    base_url: str
    region: str
    model_id: str
    invoke_id: str
    model_enabled: bool
    provider_enabled: bool
    availability: str
    availability_reason: str
    context_window: int
    input_cost_per_mtok: float
    output_cost_per_mtok: float
    cache_read_cost_per_mtok: float
    cache_write_cost_per_mtok: float
    burndown_rate: int
    cooldown_failures: int
    cooldown_window_seconds: int
    cooldown_seconds: int
    max_retry_after_seconds: int
    quotas: tuple[QuotaSpec, ...]

    def cost_micro_usd(self, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0) -> int:
        return round(input_tokens * self.input_cost_per_mtok + output_tokens * self.output_cost_per_mtok
                     + cache_read * self.cache_read_cost_per_mtok + cache_write * self.cache_write_cost_per_mtok)


@dataclass(frozen=True)
class CategorySpec:
    slug: str
    never_fallback: bool
    may_use_headroom: bool


@dataclass(frozen=True)
class ChainSpec:
    """A route's or tier's models: the primary and its fallback chain; the escalation list and its limits."""

    models: tuple[str, ...]
    escalation: tuple[str, ...] = ()
    escalate_after: int | None = None
    max_attempts: int | None = None
    # The largest context window of its models and escalation models: a larger estimate is unroutable.
    largest_context_window: int = 0


@dataclass(frozen=True)
class PolicySnapshot:
    version: int
    fingerprint: tuple
    models: dict[str, ModelSpec]
    categories: dict[str, CategorySpec]
    routes: dict[tuple[str, str], ChainSpec]
    tiers: dict[str, ChainSpec]
    default_tier: str | None
    quotas: tuple[QuotaSpec, ...] = field(default=())


def _scaled(value, metric: str) -> int:
    """A limit as an integer counter value, rounded up: `used >= 3.2` and `used >= 4` admit the same counts."""
    return math.ceil(float(value) * COST_SCALE if metric == Metric.COST_USD else value)


def _or(value, default):
    return default if value is None else value


def _chain(chain: Route | Tier) -> ChainSpec:
    entries = [*chain.entries.all(), *chain.escalation.all()]
    return ChainSpec(models=tuple(e.model.key for e in chain.entries.all()), escalation=tuple(e.model.key for e in chain.escalation.all()),
                     escalate_after=chain.escalate_after, max_attempts=chain.max_attempts,
                     largest_context_window=max((e.model.context_window for e in entries), default=0))


def _fingerprint() -> tuple[int, datetime | None]:
    policy = Policy.current()
    last_check = LLMModel.objects.aggregate(last=Max("checked_at"))["last"]
    return policy.version, last_check


def load_snapshot() -> PolicySnapshot:
    fingerprint = _fingerprint()
    policy = Policy.objects.select_related("default_tier").get(pk=1)
    providers = {p.id: p for p in Provider.objects.all()}

    quotas: list[QuotaSpec] = []
    for quota in Quota.objects.prefetch_related("models").order_by("id"):
        provider = providers[quota.provider_id]
        quotas.append(QuotaSpec(
            id=quota.id, provider=provider.slug, provider_kind=provider.kind, name=quota.name, metric=quota.metric, window=quota.window,
            window_seconds=quota.window_seconds, reset=quota.reset,
            limit=_scaled(quota.limit, quota.metric), soft_limit=_scaled(quota.soft_limit, quota.metric),
            soft_limit_ratio=float(quota.soft_limit_ratio), source=quota.source,
            model_keys=tuple(sorted(m.key for m in quota.models.all())),
        ))

    models: dict[str, ModelSpec] = {}
    for model in LLMModel.objects.all():
        provider = providers[model.provider_id]
        covering = tuple(
            q for q in quotas
            if q.provider == provider.slug and (not q.model_keys or model.key in q.model_keys)
        )
        models[model.key] = ModelSpec(
            key=model.key, provider=provider.slug, provider_kind=provider.kind, base_url=provider.base_url, region=provider.region,
            model_id=model.model_id, invoke_id=model.effective_invoke_id,
            model_enabled=model.enabled, provider_enabled=provider.enabled,
            availability=model.availability, availability_reason=model.availability_reason,
            context_window=model.context_window,
            input_cost_per_mtok=float(model.input_cost_per_mtok), output_cost_per_mtok=float(model.output_cost_per_mtok),
            cache_read_cost_per_mtok=float(_or(model.cache_read_cost_per_mtok, model.input_cost_per_mtok)),
            cache_write_cost_per_mtok=float(_or(model.cache_write_cost_per_mtok, model.input_cost_per_mtok)),
            burndown_rate=model.burndown_rate or default_burndown_rate(provider.kind, model.model_id),
            cooldown_failures=provider.cooldown_failures, cooldown_window_seconds=provider.cooldown_window_seconds,
            cooldown_seconds=provider.cooldown_seconds, max_retry_after_seconds=provider.max_retry_after_seconds, quotas=covering,
        )

    categories = {
        c.slug: CategorySpec(slug=c.slug, never_fallback=c.fallback == Category.Fallback.NEVER, may_use_headroom=c.may_use_headroom)
        for c in Category.objects.all()
    }
    routes = {(route.category.slug, route.complexity): _chain(route)
              for route in Route.objects.select_related("category").prefetch_related("entries__model", "escalation__model")}
    tiers = {tier.slug: _chain(tier) for tier in Tier.objects.prefetch_related("entries__model", "escalation__model")}
    return PolicySnapshot(
        version=policy.version, fingerprint=fingerprint, models=models, categories=categories, routes=routes, tiers=tiers,
        default_tier=policy.default_tier.slug if policy.default_tier else None, quotas=tuple(quotas),
    )


_lock = threading.Lock()
_current: PolicySnapshot | None = None
_checked_at = 0.0
_verified_at = 0.0  # when the database last confirmed the snapshot (time.monotonic())


def current_snapshot() -> PolicySnapshot:
    """The policy as this process knows it, at most ROUTER_POLICY_RECHECK_SECONDS old.

    While the database cannot be reached, the snapshot it last confirmed, for ROUTER_DATABASE_DOWN_SECONDS;
    then (or with none held) DatabaseUnavailable.
    """
    global _current, _checked_at, _verified_at
    now = time.monotonic()
    if _current is not None and now - _checked_at < settings.ROUTER_POLICY_RECHECK_SECONDS:
        return _current
    with _lock:
        try:
            if _current is None or _fingerprint() != _current.fingerprint:
                _current = load_snapshot()
        except DATABASE_ERRORS as exc:
            database_outage.outage.begin()
            _checked_at = time.monotonic()  # tried again after the recheck interval, not on every call
            if _current is not None and database_outage.still_trusted(_verified_at):
                return _current
            raise DatabaseUnavailable("The database cannot be reached and this process holds no recent copy of the policy.") from exc
        database_outage.outage.end()
        _checked_at = _verified_at = time.monotonic()
        return _current


def snapshot_trusted() -> bool:
    """Whether this process holds a policy snapshot it may still route on."""
    return _current is not None and database_outage.still_trusted(_verified_at)


def forget_snapshot() -> None:
    global _current
    _current = None
