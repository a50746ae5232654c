"""Read-only queries behind the dashboard pages; the views only call these and render.

Everything here reads a bounded amount of data whatever the size of the history: the overview
touches the catalog, the quota counters, the ledger's per-minute sums of the last 24 hours
(router.models.LedgerMinute) and the newest few fallbacks.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, Max, Min, OuterRef, Q, QuerySet, Subquery, Sum, TextField
from django.db.models.functions import Cast, TruncHour
from django.utils import timezone

from providers.models import AvailabilityCheck, LLMModel, Provider
from router import decisions
from router.counting import display_amount
from router.decisions import Refusal, refusal
from router.engine import RouteRequest
from router.models import UNREPORTED, Category, Decision, LedgerMinute, PolicyVersion
from router.records import DecisionRecord
from router.selectors import quota_status
from router.snapshot import QuotaSpec, current_snapshot
from switchboard.vocabulary import NOT_PRIMARY, Availability, Outcome

LATEST_FALLBACKS = 10
UNREPORTED_AFTER = timedelta(minutes=10)


# Quotas --------------------------------------------------------------------------------------------


@dataclass
class QuotaBar:
    """One quota as the overview draws it, in the quota's own unit (dollars for cost quotas)."""

    quota: QuotaSpec
    used: float
    limit: float
    soft_limit: float
    ratio: float
    frees_at: float | None
    burn_per_hour: float
    soft_at: float | None
    hard_at: float | None

    @property
    def id(self) -> int:
        return self.quota.id

    @property
    def level(self) -> str:
        """ok below the soft limit, warn between soft and hard, full at or over the hard limit."""
        if self.used >= self.limit:
            return "full"
        return "warn" if self.used >= self.soft_limit else "ok"

    @property
    def has_soft_limit(self) -> bool:
        return self.quota.soft_limit_ratio < 1

    @property
    def rate_keeps_under_soft(self) -> bool:
        return self.soft_at is None

    @property
    def rate_keeps_under_hard(self) -> bool:
        return self.hard_at is None

    @property
    def fill_percent(self) -> float:
        return round(min(self.ratio, 1.0) * 100, 1)

    @property
    def soft_percent(self) -> float:
        return round(min(self.quota.soft_limit_ratio, 1.0) * 100, 1)


@dataclass
class Pool:
    """The quotas one set of models draws on: the provider-wide quotas (no model keys) or a named pool."""

    model_keys: tuple[str, ...]
    bars: list[QuotaBar] = field(default_factory=list)

    @property
    def provider_wide(self) -> bool:
        return not self.model_keys


@dataclass
class ProviderCard:
    provider: Provider
    pools: list[Pool]
    models: list[LLMModel]

    @property
    def unavailable_count(self) -> int:
        return sum(1 for m in self.models if m.availability == Availability.UNAVAILABLE)


def quota_bars(now: float | None = None) -> list[QuotaBar]:
    """Every quota with usage, when it frees up and the burn-rate forecast (router.selectors.quota_status)."""
    bars = []
    for row in quota_status(now):
        quota = row.quota
        bars.append(QuotaBar(
            quota=quota,
            used=display_amount(quota, row.used),
            limit=display_amount(quota, quota.limit),
            soft_limit=display_amount(quota, quota.soft_limit),
            ratio=row.ratio,
            frees_at=row.frees_at,
            burn_per_hour=display_amount(quota, row.burn_per_hour),
            soft_at=row.soft_at,
            hard_at=row.hard_at,
        ))
    return bars


def provider_cards(now: float | None = None, *, with_quotas: bool = True) -> list[ProviderCard]:
    """One card per provider: its quotas grouped by pool, its models with availability and last check.

    Raises router.counters.CountersUnavailable when the counters cannot be read (Redis down and
    ROUTER_REDIS_DOWN=refuse); `with_quotas=False` then still gives the catalog and availability.
    """
    checks = AvailabilityCheck.objects.filter(provider=OuterRef("pk"), kind=AvailabilityCheck.Kind.AVAILABILITY).order_by("-started_at")
    failed = checks.filter(ok=False)
    providers = Provider.objects.annotate(
        last_check_at=Subquery(checks.values("started_at")[:1]),
        last_check_ok=Subquery(checks.values("ok")[:1]),
        last_error=Subquery(failed.values("error")[:1]),
        last_error_at=Subquery(failed.values("started_at")[:1]),
    ).order_by("slug")
    models_by_provider: dict[int, list[LLMModel]] = {}
    for model in LLMModel.objects.order_by("key"):
        models_by_provider.setdefault(model.provider_id, []).append(model)
    pools_by_provider: dict[str, dict[tuple[str, ...], Pool]] = {}
    for bar in quota_bars(now) if with_quotas else []:
        pools = pools_by_provider.setdefault(bar.quota.provider, {})
        pools.setdefault(bar.quota.model_keys, Pool(bar.quota.model_keys)).bars.append(bar)
    cards = []
    for provider in providers:
        pools = pools_by_provider.get(provider.slug, {})
        # Provider-wide quotas first, then the pools by their first model.
        ordered = sorted(pools.values(), key=lambda pool: (not pool.provider_wide, pool.model_keys))
        cards.append(ProviderCard(provider=provider, pools=ordered, models=models_by_provider.get(provider.id, [])))
    return cards


# Decision volume -------------------------------------------------------------------------------


@dataclass
class HourBucket:
    hour: datetime
    primary: int = 0
    fallback: int = 0
    refused: int = 0

    @property
    def total(self) -> int:
        return self.primary + self.fallback + self.refused

    @property
    def not_primary(self) -> int:
        return self.fallback + self.refused

    @property
    def fallback_rate(self) -> float | None:
        """Share of decisions that were not the primary (fallbacks and refusals); None without decisions."""
        return self.not_primary / self.total if self.total else None


@dataclass
class Volume:
    since: datetime
    buckets: list[HourBucket]

    @property
    def total(self) -> int:
        return sum(b.total for b in self.buckets)

    @property
    def fallbacks(self) -> int:
        return sum(b.fallback for b in self.buckets)

    @property
    def refused(self) -> int:
        return sum(b.refused for b in self.buckets)

    @property
    def fallback_rate(self) -> float | None:
        return (self.fallbacks + self.refused) / self.total if self.total else None


def decision_volume(now: datetime | None = None, hours: int = 24) -> Volume:
    """Decisions per hour and outcome over the last `hours` hours, from the ledger's per-minute sums.

    One aggregate over LedgerMinute's rows of those hours, so the cost follows the hours shown, not
    the traffic in them; the first and the last hourly bucket are partial (to the minute).
    """
    now = now or timezone.now()
    since = now - timedelta(hours=hours)
    rows = (
        LedgerMinute.objects.filter(minute__gte=since.replace(second=0, microsecond=0), minute__lte=now)
        .exclude(outcome=LedgerMinute.REPORTED)
        .annotate(hour=TruncHour("minute"))
        .values("hour", "outcome")
        .annotate(n=Sum("entries"))
        .order_by()
    )
    first = since.replace(minute=0, second=0, microsecond=0)
    buckets = {first + timedelta(hours=i): HourBucket(first + timedelta(hours=i)) for i in range(hours + 1)}
    for row in rows:
        bucket = buckets.get(row["hour"])
        if bucket is None:
            continue
        if row["outcome"] == Outcome.PRIMARY:
            bucket.primary += row["n"]
        elif row["outcome"] in (Outcome.FALLBACK, Outcome.ESCALATED):
            bucket.fallback += row["n"]
        else:
            bucket.refused += row["n"]
    return Volume(since=since, buckets=list(buckets.values()))


# Fallback history --------------------------------------------------------------------------------


def latest_fallbacks(limit: int = LATEST_FALLBACKS) -> list[Decision]:
    """The newest fallbacks and refusals, without their (possibly long) traces.

    One query per outcome, each reading only its newest rows from the (outcome, -created_at) index;
    a single query for all three would sort every fallback ever stored.
    """
    newest = [
        decision
        for outcome in NOT_PRIMARY
        for decision in Decision.objects.filter(outcome=outcome).defer("trace").order_by("-created_at")[:limit]
    ]
    return sorted(newest, key=lambda decision: decision.created_at, reverse=True)[:limit]


@dataclass
class Unreported:
    """A caller's counted decisions that no usage report has named after UNREPORTED_AFTER."""

    caller: str
    decisions: int
    oldest: datetime


def unreported_by_caller(now: datetime | None = None) -> list[Unreported]:
    """Per caller, the decisions of the last day left unreported for more than ten minutes: each holds
    its reservation until its window moves on, so a service that never reports blinds the router."""
    now = now or timezone.now()
    rows = (Decision.objects.filter(UNREPORTED, created_at__gte=now - timedelta(days=1), created_at__lt=now - UNREPORTED_AFTER)
            .values("caller").annotate(decisions=Count("pk"), oldest=Min("created_at")).order_by("-decisions", "caller"))
    return [Unreported(**row) for row in rows]


@dataclass
class UnroutableGroup:
    """Requests of one caller for one category or tier that the policy could not serve, for one reason."""

    caller: str
    category: str
    tier: str
    reason: str
    requests: int
    latest: datetime


def unroutable_by_caller(now: datetime | None = None, limit: int = 10) -> list[UnroutableGroup]:
    """The stored unroutable requests of the last day, grouped by caller, category or tier and reason, most
    first: a policy edit that broke a route shows here within seconds (router.decisions stores at most
    UNROUTABLE_STORED_PER_MINUTE a minute per caller and process; /metrics counts every one)."""
    now = now or timezone.now()
    rows = (Decision.objects.filter(outcome=Outcome.UNROUTABLE, created_at__gte=now - timedelta(days=1))
            .values("caller", "category", "tier", "reason").annotate(requests=Count("pk"), latest=Max("created_at"))
            .order_by("-requests", "-latest")[:limit])
    return [UnroutableGroup(**row) for row in rows]


def policy_versions() -> QuerySet[PolicyVersion]:
    """The policy history, newest first."""
    return PolicyVersion.objects.order_by("-number")


def _trace_has(key: str, value: str) -> Q:
    """Decisions whose trace has an entry with `key` equal to `value`, filtered in SQL.

    PostgreSQL answers with JSONB containment. SQLite has no JSON containment lookup, so there the
    stored JSON text is searched for the exact `"key": "value"` pair (quoted, so "gpt-4o" does not
    match "gpt-4o-mini"); the trace's entries are flat, so the pair can only come from an entry.
    """
    if connection.vendor == "postgresql":
        return Q(trace__contains=[{key: value}])
    return Q(trace_text__contains=json.dumps({key: value})[1:-1])


def fallback_decisions(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    category: str = "",
    provider: str = "",
    model: str = "",
    outcome: str = "",
    reason: str = "",
) -> QuerySet[Decision]:
    """Every fallback and refusal matching the filters, newest first (the history page and its CSV).

    `provider` and `model` match any candidate the decision considered (chosen or passed over), so
    that "fallbacks away from gpt-4o" and refusals, which chose nothing, can be found; `reason`
    matches decisions that passed a candidate over for that reason (quota, cooldown, unavailable, …).
    """
    queryset = Decision.objects.filter(outcome__in=[outcome] if outcome else NOT_PRIMARY)
    if connection.vendor != "postgresql":
        queryset = queryset.annotate(trace_text=Cast("trace", TextField()))
    if since:
        queryset = queryset.filter(created_at__gte=since)
    if until:
        queryset = queryset.filter(created_at__lt=until)
    if category:
        queryset = queryset.filter(category=category)
    if provider:
        queryset = queryset.filter(_trace_has("provider", provider))
    if model:
        queryset = queryset.filter(_trace_has("model", model))
    if reason:
        queryset = queryset.filter(_trace_has("reason", reason))
    return queryset.order_by("-created_at")


# Filter choices -----------------------------------------------------------------------------------


def category_choices() -> list[str]:
    return list(Category.objects.order_by("slug").values_list("slug", flat=True))


def provider_choices() -> list[str]:
    return list(Provider.objects.order_by("slug").values_list("slug", flat=True))


def model_choices() -> list[str]:
    return list(LLMModel.objects.order_by("key").values_list("key", flat=True))


# What-if --------------------------------------------------------------------------------------------


@dataclass
class AssumedQuota:
    """A quota as the what-if's walk saw it: the counter reading, or the ratio the user set."""

    quota: QuotaSpec
    used: float
    limit: float
    soft_limit: float
    ratio: float
    overridden: bool


@dataclass
class WhatIf:
    decision: DecisionRecord
    quotas: list[AssumedQuota]
    unavailable: tuple[str, ...]

    @property
    def refusal(self) -> Refusal | None:
        """How POST /api/v1/route would refuse it; None for a choice."""
        return refusal(self.decision) if self.decision.refused else None

    @property
    def http_status(self) -> int:
        """What POST /api/v1/route would answer: 200, or the refusal's 429 or 503."""
        return self.refusal.status if self.refusal else 200

    @property
    def error_code(self) -> str:
        """The API's error code for a refusal, empty for a choice."""
        return self.refusal.code if self.refusal else ""

    @property
    def retry_after(self) -> int | None:
        return self.refusal.retry_after if self.refusal else None


def what_if(request: RouteRequest, *, caller: str, used_ratio_overrides: dict[int, float],
            unavailable: frozenset[str]) -> WhatIf:
    """The decision the router would make under the given assumptions: a dry run, nothing counted or stored.

    Raises router.engine.UnknownChoice for a request the policy has no route for.
    """
    decision, readings = decisions.what_if(request, caller=caller, used_ratio_overrides=used_ratio_overrides, unavailable=unavailable)
    quotas_by_id = {q.id: q for q in current_snapshot().quotas}
    assumed = []
    for quota_id, reading in sorted(readings.quotas.items()):
        quota = quotas_by_id.get(quota_id)
        if quota is None:
            continue
        assumed.append(AssumedQuota(
            quota=quota, used=display_amount(quota, reading.used), limit=display_amount(quota, quota.limit),
            soft_limit=display_amount(quota, quota.soft_limit), ratio=reading.used / quota.limit if quota.limit else 0.0,
            overridden=quota_id in used_ratio_overrides,
        ))
    assumed.sort(key=lambda a: a.quota.label)
    return WhatIf(decision=decision, quotas=assumed, unavailable=tuple(sorted(unavailable)))


def current_ratios() -> dict[int, float]:
    """{quota id: used ratio} right now, shown next to the what-if's override fields."""
    return {bar.id: bar.ratio for bar in quota_bars()}
