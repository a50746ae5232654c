"""What each alert rule's condition finds at a moment: one Finding per subject (a quota, a model, a provider...)
that is in trouble. Pure reads at `moment.now` (seconds since the epoch), so tests move the clock; what several
rules read (the quotas' status) is read once per moment."""

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cached_property

from django.conf import settings
from django.db.models import Count, Max, Min

from alerts.models import AlertRule, Condition
from providers.models import AvailabilityCheck, LLMModel, Provider
from router import counters
from router.models import Decision
from router.selectors import QuotaStatus, model_cooldowns, quota_status
from switchboard.vocabulary import Availability, Outcome, ProviderKind

REFUSED_OUTCOMES = (Outcome.FAILED_FAST, Outcome.EXHAUSTED, Outcome.ATTEMPTS_EXHAUSTED, Outcome.UNROUTABLE)
REFUSAL_WINDOW_SECONDS = 300


@dataclass(frozen=True)
class Finding:
    """One subject a rule's condition holds for, and the sentence that says so."""

    subject: str
    summary: str


class Moment:
    """One evaluation's moment, and the reads its rules share."""

    def __init__(self, now: float) -> None:
        self.now = now

    @cached_property
    def quotas(self) -> list[QuotaStatus]:
        return quota_status(self.now)


def _clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%H:%M:%S UTC")


def quota_soft_limit(rule: AlertRule, moment: Moment) -> list[Finding]:
    return [Finding(row.quota.label, f"Quota {row.quota.label} is at {row.ratio:.0%} of its limit, over its soft limit of "
                    f"{row.quota.soft_limit_ratio:.0%}: requests fall back to the next model of their routes.")
            for row in moment.quotas if row.used >= row.quota.soft_limit]


def quota_forecast(rule: AlertRule, moment: Moment) -> list[Finding]:
    now = moment.now
    findings = []
    for row in moment.quotas:
        if row.hard_at is not None and row.hard_at - now <= rule.within_minutes * 60:
            when = "has reached its hard limit" if row.hard_at <= now else \
                f"reaches its hard limit at {_clock(row.hard_at)} ({(row.hard_at - now) / 60:.0f} min) at the last hour's rate"
            findings.append(Finding(row.quota.label, f"Quota {row.quota.label} {when}; it is at {row.ratio:.0%} now."))
    return findings


def refusal_share(rule: AlertRule, moment: Moment) -> list[Finding]:
    now = moment.now
    until = datetime.fromtimestamp(now, tz=UTC)
    decisions = Decision.objects.filter(created_at__gt=until - timedelta(seconds=REFUSAL_WINDOW_SECONDS), created_at__lte=until)
    if rule.category:
        decisions = decisions.filter(category=rule.category)
    counts = dict(decisions.values_list("outcome").annotate(n=Count("pk")).order_by())
    total = sum(counts.values())
    refused = sum(counts.get(outcome, 0) for outcome in REFUSED_OUTCOMES)
    if total < rule.min_decisions or refused * 100 <= rule.percent * total:
        return []
    scope = f"of category {rule.category}" if rule.category else ""
    return [Finding(f"category {rule.category}" if rule.category else "all requests",
                    f"{refused / total:.0%} of routing requests {scope} were refused over the last 5 minutes "
                    f"({refused} of {total}; alert above {Decimal(rule.percent).normalize():f} %).".replace("  ", " "))]


def model_out(rule: AlertRule, moment: Moment) -> list[Finding]:
    cooling = model_cooldowns(moment.now)
    findings = {}
    for model in LLMModel.objects.filter(enabled=True, availability=Availability.UNAVAILABLE).select_related("provider"):
        why = "a call reported it not found" if model.not_found_at else "the last availability check found it unavailable"
        findings[model.key] = Finding(f"model {model.key}", f"Model {model.key} ({model.provider.slug}) is out of routing: {why}"
                                      + (f" ({model.availability_reason[:200]})." if model.availability_reason else "."))
    for key, state in cooling.items():
        if key not in findings:
            reason = f": {state.cooldown_reason}" if state.cooldown_reason else ""
            findings[key] = Finding(f"model {key}", f"Model {key} is cooling down until {_clock(state.cooldown_until)}{reason}.")
    return list(findings.values())


def _configured(provider: Provider) -> bool:
    """A provider without credentials is never called: its refresh errors are not incidents."""
    if provider.kind == ProviderKind.BEDROCK or provider.has_secret:
        return True
    return bool(provider.credential_env and os.environ.get(provider.credential_env))


def refresh_failing(rule: AlertRule, moment: Moment) -> list[Finding]:
    now = moment.now
    checks = AvailabilityCheck.objects.filter(kind=AvailabilityCheck.Kind.AVAILABILITY, started_at__lte=datetime.fromtimestamp(now, tz=UTC))
    last_ok = dict(checks.filter(ok=True).values("provider_id").annotate(at=Max("started_at")).values_list("provider_id", "at"))
    findings = []
    for provider in Provider.objects.filter(enabled=True).order_by("slug"):
        failing = checks.filter(provider=provider, ok=False)
        if provider.pk in last_ok:
            failing = failing.filter(started_at__gt=last_ok[provider.pk])
        summary = failing.aggregate(first=Min("started_at"), last=Max("started_at"))
        if summary["first"] is None or not _configured(provider) or now - summary["first"].timestamp() < rule.for_minutes * 60:
            continue
        error = failing.filter(started_at=summary["last"]).values_list("error", flat=True).first() or ""
        findings.append(Finding(f"provider {provider.slug}",
                                f"The availability refresh of provider {provider.slug} has failed since "
                                f"{summary['first']:%Y-%m-%d %H:%M} UTC: {error[:200]}. Its models stay as they were."))
    return findings


def ledger_backlog(rule: AlertRule, moment: Moment) -> list[Finding]:
    if not settings.REDIS_URL:
        return []  # on database counters every row is written as it is accepted
    try:
        backlog = counters.redis_counters().backlog(moment.now)
    except counters.RedisUnreachable:
        return []  # counting_on_database says so
    if backlog["oldest_seconds"] <= rule.seconds:
        return []
    return [Finding("ledger", f"{backlog['rows']} accepted decisions and reports have waited in Redis for the database, the oldest "
                    f"for {backlog['oldest_seconds']:.0f} s: the drain (Celery worker and beat) is stopped or cannot write.")]


def counting_on_database(rule: AlertRule, moment: Moment) -> list[Finding]:
    if not settings.REDIS_URL:
        return []  # counting on the database is the configuration, not an outage
    try:
        counters.redis_counters().backlog()
    except counters.RedisUnreachable as exc:
        then = "decisions are counted on the database" if settings.ROUTER_REDIS_DOWN == "db" else \
            "routing is refused (ROUTER_REDIS_DOWN=refuse)"
        return [Finding("redis", f"Redis cannot be reached ({exc.__class__.__name__}): {then} until it answers.")]
    return []


CONDITIONS: dict[str, Callable[[AlertRule, Moment], list[Finding]]] = {
    Condition.QUOTA_SOFT_LIMIT: quota_soft_limit,
    Condition.QUOTA_FORECAST: quota_forecast,
    Condition.REFUSAL_SHARE: refusal_share,
    Condition.MODEL_OUT: model_out,
    Condition.REFRESH_FAILING: refresh_failing,
    Condition.LEDGER_BACKLOG: ledger_backlog,
    Condition.COUNTING_ON_DATABASE: counting_on_database,
}
