"""Read-only queries behind the dashboard pages; the views only call these and render.

Everything here reads a bounded amount of data whatever the size of the history: the overview
touches the catalog, the counters, the ledger's per-minute or per-hour sums of the range
(router.models.LedgerMinute, LedgerHour), the newest decisions of each outcome in the range (at most
REASONS_READ_PER_OUTCOME) and the newest few fallbacks; a quota's page its models' sums of the range.
"""

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, F, Max, Min, OuterRef, Q, QuerySet, Subquery, Sum, TextField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, TruncHour
from django.http import QueryDict
from django.utils import timezone

from alerts import selectors as alert_selectors
from alerts.models import Alert, AlertChannel
from providers.models import AvailabilityCheck, LLMModel, Provider
from router import counters, decisions
from router.counters import marks
from router.counting import covered_by, display_amount, summed_amount
from router.decisions import Refusal, refusal
from router.engine import RouteRequest
from router.models import UNREPORTED, Category, Decision, LedgerHour, LedgerMinute, PolicyVersion, Route, Tier
from router.ops import LEDGER_STALE_SECONDS
from router.records import DecisionRecord
from router.selectors import model_cooldowns, quota_status
from router.snapshot import PolicySnapshot, QuotaSpec, current_snapshot
from router.tuning import EpochSeconds, QuotaTuning
from router.windows import bucket_at
from switchboard.vocabulary import COUNTED_OUTCOMES, NOT_PRIMARY, Availability, Outcome, ProviderKind, Reset, SkipReason

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

    @property
    def configured(self) -> bool:
        return provider_configured(self.provider)


def provider_configured(provider: Provider) -> bool:
    """Whether the provider has credentials to call it with: Bedrock takes the AWS chain, every other kind
    a stored secret or a set environment variable. One without is set up but not in use, not an incident."""
    if provider.kind == ProviderKind.BEDROCK or provider.has_secret:
        return True
    return bool(provider.credential_env and os.environ.get(provider.credential_env))


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
class Bucket:
    start: datetime
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
    until: datetime
    bucket_seconds: int
    buckets: list[Bucket]

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


def _bucket_start(moment: datetime, seconds: int) -> datetime:
    return datetime.fromtimestamp(moment.timestamp() // seconds * seconds, tz=UTC)


# Up to this span the chart reads the per-minute sums; longer ranges read the per-hour sums.
MINUTE_SUMS_UP_TO = timedelta(hours=48)


def decision_volume(now: datetime | None = None, hours: int = 24, *, since: datetime | None = None,
                    bucket_seconds: int = 3600) -> Volume:
    """Decisions per bucket and outcome from `since` (default: `hours` before `now`) to `now`, from the ledger's sums.

    One aggregate over LedgerMinute's rows of the range (LedgerHour's beyond two days), so the cost follows
    the range, not the traffic in it; the first and the last bucket are partial (to the minute, or to the
    hour on the per-hour sums).
    """
    now = now or timezone.now()
    since = since or now - timedelta(hours=hours)
    first, last = _bucket_start(since, bucket_seconds), _bucket_start(now, bucket_seconds)
    count = int((last - first).total_seconds() // bucket_seconds) + 1
    buckets = {first + timedelta(seconds=bucket_seconds * i): Bucket(first + timedelta(seconds=bucket_seconds * i)) for i in range(count)}
    if now - since <= MINUTE_SUMS_UP_TO:
        rows = LedgerMinute.objects.filter(minute__gte=since.replace(second=0, microsecond=0), minute__lte=now)
        period = TruncHour("minute") if bucket_seconds % 3600 == 0 else F("minute")
    else:
        rows = LedgerHour.objects.filter(hour__gte=since.replace(minute=0, second=0, microsecond=0), hour__lte=now)
        period = F("hour")
    grouped = rows.exclude(outcome=LedgerMinute.REPORTED).annotate(at=period).values("at", "outcome").annotate(n=Sum("entries")).order_by()
    for row in grouped:
        bucket = buckets.get(_bucket_start(row["at"], bucket_seconds))
        if bucket is None:
            continue
        if row["outcome"] == Outcome.PRIMARY:
            bucket.primary += row["n"]
        elif row["outcome"] in (Outcome.FALLBACK, Outcome.ESCALATED):
            bucket.fallback += row["n"]
        else:
            bucket.refused += row["n"]
    return Volume(since=since, until=now, bucket_seconds=bucket_seconds, buckets=list(buckets.values()))


# Now: what is hurting ------------------------------------------------------------------------------

# The top reasons read at most this many of the newest decisions of each outcome in the range.
REASONS_READ_PER_OUTCOME = 2000
TOP_REASONS = 8


@dataclass
class CoolingModel:
    """A model the router passes over until `until` after failures or a provider's retry-after."""

    key: str
    model_id: int | None
    until: float
    reason: str
    reported_by: str


@dataclass
class ReasonCount:
    """How many decisions of one outcome turned their primary away for one reason (and quota or model)."""

    outcome: str
    reason: str  # a SkipReason, or attempts_exhausted
    subject: str  # the quota's label, the model's key, or the category
    quota_id: int | None
    model: str
    category: str
    count: int

    @property
    def outcome_label(self) -> str:
        return Outcome(self.outcome).label

    @property
    def history_query(self) -> str:
        """The fallback history's filters that list these decisions."""
        query = QueryDict(mutable=True)
        query["outcome"] = self.outcome
        if self.quota_id is not None:
            query["quota"] = str(self.quota_id)
        elif self.model:
            query["model"] = self.model
        if self.reason in SkipReason.values:
            query["reason"] = self.reason
        if self.category:
            query["category"] = self.category
        return query.urlencode()


@dataclass
class LedgerState:
    """The rows accepted into Redis and not yet written to the database (the audit's backlog)."""

    rows: int
    oldest_seconds: float

    @property
    def stale(self) -> bool:
        return self.oldest_seconds > LEDGER_STALE_SECONDS


@dataclass
class NowPanel:
    pressured: list[QuotaBar]
    cooling: list[CoolingModel]
    unavailable: list[LLMModel]
    not_configured: list[Provider]
    reasons: list[ReasonCount]
    reasons_capped: bool
    ledger: LedgerState | None
    ledger_error: str
    redis_loss: dict | None = None  # the period whose answered rows Redis may have lost, noticed within a day
    alerts: list[Alert] = field(default_factory=list)  # firing now (alerts.evaluate)
    failing_channels: list[AlertChannel] = field(default_factory=list)

    @property
    def reasons_read(self) -> int:
        return REASONS_READ_PER_OUTCOME

    @property
    def calm(self) -> bool:
        return not (self.pressured or self.cooling or self.unavailable or self.reasons or self.ledger_error or self.redis_loss
                    or (self.ledger and self.ledger.stale) or self.alerts or self.failing_channels)


def cooling_models(now: float | None = None) -> list[CoolingModel]:
    """The models cooling down now, soonest back first, with why and the API key whose report started it."""
    ids = catalog().models
    cooling = [CoolingModel(key=key, model_id=ids.get(key), until=state.cooldown_until, reason=state.cooldown_reason,
                            reported_by=state.cooldown_by)
               for key, state in model_cooldowns(now).items()]
    return sorted(cooling, key=lambda model: (model.until, model.key))


def top_reasons(since: datetime, until: datetime, limit: int = TOP_REASONS) -> tuple[list[ReasonCount], bool]:
    """The commonest reasons fallbacks and refusals of the range turned their primary away, with counts, and
    whether an outcome had more decisions than were read (REASONS_READ_PER_OUTCOME, newest first).

    One read per outcome on its (outcome, -created_at) index, sent as one UNION ALL where the database allows it;
    unroutable requests have their own panel.
    """
    each = [Decision.objects.filter(outcome=outcome, created_at__gte=since, created_at__lte=until).order_by("-created_at")
            .values_list(EpochSeconds("created_at"), "outcome", "primary_key", "category", KT("trace__0__reason"),
                         KT("trace__0__quotas__0__quota_id"), KT("trace__0__quotas__0__quota"))[:REASONS_READ_PER_OUTCOME + 1]
            for outcome in NOT_PRIMARY if outcome != Outcome.UNROUTABLE]
    if connection.features.supports_slicing_ordering_in_compound:
        rows = list(each[0].union(*each[1:], all=True))
    else:
        rows = [row for decisions in each for row in decisions]
    read: Counter = Counter()
    counts: Counter = Counter()
    rows.sort(key=lambda row: -row[0])  # a UNION's rows come in no promised order: the newest of each outcome first
    for _, outcome, primary, category, reason, quota_id, quota in rows:
        read[outcome] += 1
        if read[outcome] > REASONS_READ_PER_OUTCOME:
            continue
        if outcome == Outcome.ATTEMPTS_EXHAUSTED:
            counts[(outcome, outcome, category, None, "", category)] += 1
        elif reason == SkipReason.QUOTA and quota_id is not None:
            counts[(outcome, reason, quota, int(quota_id), "", "")] += 1
        else:
            counts[(outcome, reason or "", primary, None, primary, "")] += 1
    capped = any(number > REASONS_READ_PER_OUTCOME for number in read.values())
    reasons = [ReasonCount(outcome, reason, subject, quota_id, model, category, count)
               for (outcome, reason, subject, quota_id, model, category), count in counts.most_common(limit)]
    return reasons, capped


def ledger_state() -> tuple[LedgerState | None, str]:
    """The audit's backlog in Redis, and an error when Redis cannot be asked; (None, "") on database counters,
    which write the ledger as they decide."""
    if not settings.REDIS_URL:
        return None, ""
    try:
        backlog = counters.redis_counters().backlog()
    except Exception as exc:  # whatever stops the probe is what the panel exists to say
        return None, f"Redis cannot be reached ({exc.__class__.__name__}): decisions and reports are not being recorded there."
    return LedgerState(rows=backlog["rows"], oldest_seconds=backlog["oldest_seconds"]), ""


def redis_loss() -> dict | None:
    """The period whose answered decisions and reports Redis may have lost, when a drain noticed one in the last day
    (router.counters.marks); None on database counters."""
    if not settings.REDIS_URL:
        return None
    return marks.last_loss(counters.mark_store())


def now_panel(cards: list[ProviderCard], since: datetime, until: datetime) -> NowPanel:
    """What is hurting right now, from the cards already read and the range's decisions."""
    bars = [bar for card in cards for pool in card.pools for bar in pool.bars]
    pressured = sorted((bar for bar in bars if bar.level != "ok"), key=lambda bar: -bar.ratio)
    models = [model for card in cards for model in card.models]
    reasons, capped = top_reasons(since, until)
    ledger, ledger_error = ledger_state()
    return NowPanel(
        pressured=pressured,
        cooling=cooling_models(),
        unavailable=[model for model in models if model.availability == Availability.UNAVAILABLE],
        not_configured=[card.provider for card in cards if not card.configured],
        reasons=reasons, reasons_capped=capped, ledger=ledger, ledger_error=ledger_error, redis_loss=redis_loss(),
        alerts=alert_selectors.open_alerts(), failing_channels=alert_selectors.failing_channels(),
    )


# Fallback history --------------------------------------------------------------------------------


def latest_fallbacks(limit: int = LATEST_FALLBACKS) -> list[Decision]:
    """The newest fallbacks and refusals, without their (possibly long) traces.

    One read per outcome, each of only its newest rows from the (outcome, -created_at) index (a single read of
    every outcome would sort every fallback ever stored), sent as one UNION ALL where the database allows it.
    """
    each = [Decision.objects.filter(outcome=outcome).defer("trace").order_by("-created_at")[:limit] for outcome in NOT_PRIMARY]
    if connection.features.supports_slicing_ordering_in_compound:  # PostgreSQL: the reads in one round trip
        newest = list(each[0].union(*each[1:], all=True))
    else:
        newest = [decision for decisions in each for decision in decisions]
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


def unroutable_by_caller(now: datetime | None = None, limit: int = 10, since: datetime | None = None) -> list[UnroutableGroup]:
    """The stored unroutable requests since `since` (default: the last day), grouped by caller, category or tier
    and reason, most first: a policy edit that broke a route shows here within seconds (router.decisions stores
    at most UNROUTABLE_STORED_PER_MINUTE a minute per caller and process; /metrics counts every one)."""
    now = now or timezone.now()
    since = since or now - timedelta(days=1)
    rows = (Decision.objects.filter(outcome=Outcome.UNROUTABLE, created_at__gte=since, created_at__lte=now)
            .values("caller", "category", "tier", "reason").annotate(requests=Count("pk"), latest=Max("created_at"))
            .order_by("-requests", "-latest")[:limit])
    return [UnroutableGroup(**row) for row in rows]


def policy_versions() -> QuerySet[PolicyVersion]:
    """The policy history, newest first."""
    return PolicyVersion.objects.order_by("-number")


def policy_version_at(number: int) -> PolicyVersion | None:
    """The policy as version `number` had it: that change, or the newest one before it."""
    return PolicyVersion.objects.filter(number__lte=number).order_by("-number").first()


def _trace_has(key: str, value: str) -> Q:
    """Decisions whose trace has an entry with `key` equal to `value`, filtered in SQL.

    PostgreSQL answers with JSONB containment. SQLite has no JSON containment lookup, so there the
    stored JSON text is searched for the exact `"key": "value"` pair (quoted, so "gpt-4o" does not
    match "gpt-4o-mini"); the trace's entries are flat, so the pair can only come from an entry.
    """
    if connection.vendor == "postgresql":
        return Q(trace__contains=[{key: value}])
    return Q(trace_text__contains=json.dumps({key: value})[1:-1])


def _trace_names_quota(quota_id: int) -> Q:
    """Decisions whose trace names the quota: a candidate was passed over for it."""
    if connection.vendor == "postgresql":
        return Q(trace__contains=[{"quotas": [{"quota_id": quota_id}]}])
    # The stored entry lists the quota's id between its label and its metric: `"quota_id": 5,` is never 55.
    return Q(trace_text__contains=f'"quota_id": {int(quota_id)},')


def fallback_decisions(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    category: str = "",
    provider: str = "",
    model: str = "",
    outcome: str = "",
    reason: str = "",
    quota: int | None = None,
) -> QuerySet[Decision]:
    """Every fallback and refusal matching the filters, newest first (the history page and its CSV).

    `provider` and `model` match any candidate the decision considered (chosen or passed over), so
    that "fallbacks away from gpt-4o" and refusals, which chose nothing, can be found; `reason`
    matches decisions that passed a candidate over for that reason (quota, cooldown, unavailable, …); `quota`
    (an id) those whose trace names that quota.
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
    if quota is not None:
        queryset = queryset.filter(_trace_names_quota(quota))
    return queryset.order_by("-created_at")


# Filter choices -----------------------------------------------------------------------------------


def category_choices() -> list[str]:
    return list(Category.objects.order_by("slug").values_list("slug", flat=True))


def quota_choices() -> list[tuple[int, str]]:
    return sorted(((quota.id, quota.label) for quota in current_snapshot().quotas), key=lambda choice: choice[1])


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


# A quota's page -------------------------------------------------------------------------------------

QUOTA_DECISIONS_SHOWN = 20
# A span (range plus window) up to this long is drawn from the per-minute sums; a longer one from the per-hour
# sums, unless the window is shorter than an hour (an hour's sum would say nothing about a minute's window).
QUOTA_MINUTES_UP_TO = timedelta(days=2)


@dataclass
class UsagePoint:
    at: datetime  # the bucket's start
    used: float  # the highest usage the quota counted in the bucket, in its own unit


@dataclass
class PolicyMarker:
    number: int
    created_at: datetime
    author: str
    changes: list[dict]


def quota_spec(quota_id: int) -> QuotaSpec | None:
    return next((quota for quota in current_snapshot().quotas if quota.id == quota_id), None)


def quota_usage(quota: QuotaSpec, since: datetime, until: datetime, bucket_seconds: int,
                replayed: QuotaTuning | None = None) -> list[UsagePoint]:
    """What the quota counted over the range, the highest of each bucket, replayed from the ledger's sums.

    One grouped query over the per-minute (or per-hour) sums of the quota's models from one window before
    `since`: at each step the usage is what the window holds (a rolling window) or what its calendar period
    has counted so far. On per-hour sums a rolling window moves by whole hours. A chart drawn in minutes takes
    the usage the quota's tuning over the same range replayed (`replayed`, to its last whole minute) instead.
    """
    window = timedelta(seconds=quota.window_seconds)
    step = 60 if window < timedelta(hours=1) or until - since + window <= QUOTA_MINUTES_UP_TO else 3600
    if step == 60 and replayed is not None and replayed.since == since.replace(second=0, microsecond=0):
        highest: dict[int, int] = {}
        origin = int(replayed.since.timestamp())
        for index, used in enumerate(replayed.usage):
            bucket = (origin + 60 * index) // bucket_seconds * bucket_seconds
            highest[bucket] = max(highest.get(bucket, 0), used)
        return [UsagePoint(datetime.fromtimestamp(bucket, tz=UTC), display_amount(quota, used)) for bucket, used in highest.items()]
    start = _bucket_start(since - window, step)
    steps = int((until - start).total_seconds() // step) + 1
    covered = covered_by(quota)
    counted = {"outcome__in": [*COUNTED_OUTCOMES, LedgerMinute.REPORTED]}
    if step == 60:
        rows = LedgerMinute.objects.filter(covered, minute__gte=start, minute__lte=until, **counted).values(at=EpochSeconds("minute"))
    else:
        rows = LedgerHour.objects.filter(covered, hour__gte=start, hour__lte=until, **counted).values(at=EpochSeconds("hour"))
    per_step = [0] * steps
    first, origin = int(_bucket_start(since, step).timestamp()), int(start.timestamp())
    for at, counted in rows.annotate(counted=summed_amount(quota)).order_by().values_list("at", "counted"):
        per_step[(at - origin) // step] += round(counted or 0)
    length = max(1, quota.window_seconds // step)
    highest: dict[int, int] = {}
    total, period = 0, None
    for index, value in enumerate(per_step):
        second = origin + step * index
        if quota.reset == Reset.CALENDAR:
            current = bucket_at(quota, second)
            total = value if current != period else total + value
            period = current
        else:
            total += value - (per_step[index - length] if index >= length else 0)
        if second >= first:
            bucket = second // bucket_seconds * bucket_seconds
            highest[bucket] = max(highest.get(bucket, 0), total)
    return [UsagePoint(datetime.fromtimestamp(bucket, tz=UTC), display_amount(quota, used)) for bucket, used in highest.items()]


def quota_policy_changes(quota: QuotaSpec, since: datetime, until: datetime) -> list[PolicyMarker]:
    """The policy versions of the range that changed the quota, oldest first (the history is a few rows a day)."""
    name = f"{quota.provider}/{quota.name}"
    markers = []
    for version in PolicyVersion.objects.filter(created_at__gte=since, created_at__lte=until).order_by("number"):
        changes = [change for change in version.changes if change.get("kind") == "quota" and change.get("name") == name]
        if changes:
            markers.append(PolicyMarker(version.number, version.created_at, version.author, changes))
    return markers


def quota_decisions(quota: QuotaSpec, since: datetime, until: datetime, limit: int = QUOTA_DECISIONS_SHOWN) -> list[Decision]:
    """The newest fallbacks and refusals of the range whose trace names the quota."""
    return list(fallback_decisions(since=since, until=until, quota=quota.id)[:limit])


# Links -----------------------------------------------------------------------------------------------


@dataclass
class Catalog:
    """The ids behind the names a page shows, so that each name can link to its object (a few small reads)."""

    providers: dict[str, int]
    models: dict[str, int]
    routes: dict[tuple[str, str], int]  # (category, complexity)
    tiers: dict[str, int]

    def route_id(self, category: str, complexity: str) -> int | None:
        """The route a request of this category and complexity takes: its own, else the category's `any`."""
        return self.routes.get((category, complexity)) or self.routes.get((category, "any"))


# The catalog read for the policy snapshot this process routes on: (snapshot, catalog).
_catalog: tuple[PolicySnapshot, Catalog] | None = None


def catalog() -> Catalog:
    """The ids of the current policy's objects, read again only when the policy snapshot is (router.snapshot): every
    edit of a provider, model, route or tier moves the policy version, so the ids are as fresh as the routing."""
    global _catalog
    snapshot = current_snapshot()
    if _catalog is None or _catalog[0] is not snapshot:
        _catalog = snapshot, Catalog(
            providers=dict(Provider.objects.values_list("slug", "pk")),
            models=dict(LLMModel.objects.values_list("key", "pk")),
            routes={(category, complexity): pk
                    for category, complexity, pk in Route.objects.values_list("category__slug", "complexity", "pk")},
            tiers=dict(Tier.objects.values_list("slug", "pk")),
        )
    return _catalog[1]


# Retry-After --------------------------------------------------------------------------------------------


@dataclass
class FreeUp:
    """When one passed-over candidate could be chosen again, and what holds it back until then."""

    model: str
    reason: str  # quota, cooldown or rate_limit
    at: float | None  # None: a quota the request's estimate alone exceeds (the router answers its default wait)
    quota: str = ""
    quota_id: int | None = None
    earliest: bool = False


def free_ups(trace: list[dict]) -> list[FreeUp]:
    """Per passed-over candidate whose reason ends at a known time, when it frees up, soonest first; the soonest is
    marked `earliest`: a refusal's Retry-After counts the seconds to it (router.engine._retry_after). A candidate
    held by several quotas frees up when the last of them does."""
    found = []
    for entry in trace:
        if entry.get("until"):
            found.append(FreeUp(entry["model"], entry["reason"], entry["until"]))
        elif entry.get("reason") == SkipReason.QUOTA and entry.get("quotas"):
            frees = [blocked.get("frees_at") for blocked in entry["quotas"]]
            last = entry["quotas"][0] if None in frees else max(entry["quotas"], key=lambda blocked: blocked["frees_at"])
            found.append(FreeUp(entry["model"], entry["reason"], None if None in frees else last["frees_at"],
                                quota=last["quota"], quota_id=last.get("quota_id")))
    found.sort(key=lambda free: (free.at is None, free.at or 0))
    if found:
        found[0].earliest = True
    return found
