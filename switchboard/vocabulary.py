"""The words every app shares, defined once: decision outcomes, why a candidate is passed over, quota
metrics and windows, provider kinds, model availability, usage statuses and API key scopes.

They are Django text choices, so a model field, a form, the engine and the API all take the same
values; each member is also the plain string stored in the database and sent over the API.
"""

from django.db import models


class Outcome(models.TextChoices):
    """What a routing decision came to."""

    PRIMARY = "primary"
    FALLBACK = "fallback"
    ESCALATED = "escalated"  # a task that kept failing was given a model of its route's escalation list
    FAILED_FAST = "failed_fast", "failed fast"
    EXHAUSTED = "exhausted"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted", "attempts exhausted"
    UNROUTABLE = "unroutable"  # the policy has nothing the request could ever use: no route, no such category or tier, too large


# Decisions that chose a model, and so count against its quotas.
COUNTED_OUTCOMES = (Outcome.PRIMARY, Outcome.FALLBACK, Outcome.ESCALATED)
# Every downgrade, escalation and refusal: what the audit keeps longest and the fallback history shows.
NOT_PRIMARY = (Outcome.FALLBACK, Outcome.ESCALATED, Outcome.FAILED_FAST, Outcome.EXHAUSTED, Outcome.ATTEMPTS_EXHAUSTED,
               Outcome.UNROUTABLE)


class Verdict(models.TextChoices):
    """A candidate's verdict in a decision's trace."""

    CHOSEN = "chosen"
    SKIPPED = "skipped"


class SkipReason(models.TextChoices):
    """Why the walk passed a candidate over: a stored trace's `reason`, the API's `cause` (docs/api.md)."""

    EXCLUDED = "excluded"
    DISABLED = "disabled"
    ALREADY_TRIED = "already_tried"
    UNAVAILABLE = "unavailable"
    COOLDOWN = "cooldown"
    RATE_LIMIT = "rate_limit"
    CONTEXT_WINDOW = "context_window"
    QUOTA = "quota"
    API = "api", "API the caller cannot call"  # its provider's kind is not among the request's `apis`


# Reasons that do not depend on the counters: a walk that passed candidates over only for these
# gives the same answer whatever the counters read.
STATIC_SKIP_REASONS = frozenset({
    SkipReason.EXCLUDED, SkipReason.DISABLED, SkipReason.ALREADY_TRIED, SkipReason.UNAVAILABLE, SkipReason.CONTEXT_WINDOW,
    SkipReason.API,
})


class RefusalCode(models.TextChoices):
    """The `error` of a refused routing request."""

    QUOTA_EXCEEDED = "quota_exceeded"
    PRIMARY_UNAVAILABLE = "primary_unavailable"
    NO_CAPACITY = "no_capacity"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    UNROUTABLE = "unroutable"


class Complexity(models.TextChoices):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    ANY = "any"


# What a request may name; `any` is only a route's fallback for every complexity.
REQUEST_COMPLEXITIES = (Complexity.LOW, Complexity.MEDIUM, Complexity.HIGH)


class ProviderKind(models.TextChoices):
    """Which API a provider speaks, and so how it counts."""

    ANTHROPIC = "anthropic", "Anthropic"
    OPENAI = "openai", "OpenAI"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible"
    BEDROCK = "bedrock", "AWS Bedrock"


class Metric(models.TextChoices):
    """What a quota counts."""

    REQUESTS = "requests"
    TOKENS = "tokens"
    INPUT_TOKENS = "input_tokens"
    OUTPUT_TOKENS = "output_tokens"
    COST_USD = "cost_usd"


class Window(models.TextChoices):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"


WINDOW_SECONDS = {Window.MINUTE: 60, Window.HOUR: 3600, Window.DAY: 86400, Window.WEEK: 604800}


class Reset(models.TextChoices):
    ROLLING = "rolling"
    CALENDAR = "calendar", "calendar (00:00 UTC, weeks on Monday)"


class Availability(models.TextChoices):
    """What the last availability check found out about a model; `unknown` is never a reason to pass it over."""

    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"
    UNKNOWN = "unknown"


class UsageStatus(models.TextChoices):
    """How a reported call ended."""

    OK = "ok"
    RATE_LIMITED = "rate_limited", "rate limited"
    ERROR = "error"
    NOT_FOUND = "not_found", "not found"  # the key cannot reach the model: out of routing until a probe answers
    NOT_SENT = "not_sent", "not sent"  # the call never reached the provider: the decision's whole reservation is given back


# Reports of a failed call: enough of them in a row put a model in cooldown.
FAILURE_STATUSES = (UsageStatus.RATE_LIMITED, UsageStatus.ERROR)


class Scope(models.TextChoices):
    """What an API key may do."""

    ROUTE = "route"
    USAGE = "usage"
    READ = "read"
    ADMIN = "admin"
