"""The candidate walk: pure functions from (policy snapshot, request, counter readings) to a decision.

Nothing here touches the database or Redis, so the same walk serves counted decisions, dry runs
and the dashboard's what-if.
"""

import math
from dataclasses import dataclass, field

import msgspec

from router.counting import amount, display_amount, reservation
from router.snapshot import ChainSpec, ModelSpec, PolicySnapshot, QuotaSpec
from switchboard.vocabulary import Availability, Complexity, Metric, Outcome, SkipReason, Verdict

DEFAULT_RETRY_AFTER = 60


class UnknownChoice(Exception):
    """The request is not one the router can take (both a category and a tier, an unknown model to exclude)."""

    def __init__(self, code: str, detail: str, valid: list[str]) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.valid = valid


class Unroutable(UnknownChoice):
    """The policy has nothing the request could ever use: an unknown category or tier, no route for its complexity,
    no default tier, an estimate beyond every candidate's context window, or no candidate of the caller's `apis`. `code` says which; `detail` what
    would make it routable. Stored as a refusal, so that a broken policy shows on the dashboard."""


class RouteRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What a routing request asks for (a msgspec Struct: built on every decision, it costs a tenth of a dataclass)."""

    category: str | None = None
    complexity: str = Complexity.MEDIUM
    tier: str | None = None
    estimated_input_tokens: int = 0
    estimated_output_tokens: int = 0
    estimated_cache_read_tokens: int = 0  # the part of the input the service expects the provider's prompt cache to hold
    exclude: frozenset[str] = frozenset()
    attempt: int = 1  # the how-manieth try of the same task
    request_id: str | None = None  # a retry with the same id answers the same decision (router.retries); the walk ignores it
    apis: frozenset[str] | None = None  # the provider kinds the caller can call; None: any

    def can_call(self, model: ModelSpec | None) -> bool:
        """Whether the caller can call this model's provider API (a model missing from the catalog: the walk says so)."""
        return self.apis is None or model is None or model.provider_kind in self.apis


@dataclass(frozen=True)
class QuotaReading:
    used: int
    frees_at: float | None = None


@dataclass(frozen=True)
class RateLimitState:
    """What the provider's rate-limit headers last said about a model: what remains of each limit, and when it resets."""

    requests_remaining: int | None = None
    requests_reset_at: float | None = None
    tokens_remaining: int | None = None
    tokens_reset_at: float | None = None
    input_tokens_remaining: int | None = None
    input_tokens_reset_at: float | None = None
    output_tokens_remaining: int | None = None
    output_tokens_reset_at: float | None = None

    @property
    def resets_at(self) -> float | None:
        """When the last of its limits resets: until then the state holds."""
        return max((at for at in (self.requests_reset_at, self.tokens_reset_at, self.input_tokens_reset_at, self.output_tokens_reset_at)
                    if at), default=None)


@dataclass(frozen=True)
class ModelState:
    cooldown_until: float | None = None
    cooldown_reason: str = ""
    cooldown_by: str = ""  # the caller (API key name) whose report started the cooldown
    ratelimit: RateLimitState | None = None


@dataclass
class Readings:
    quotas: dict[int, QuotaReading] = field(default_factory=dict)
    models: dict[str, ModelState] = field(default_factory=dict)


@dataclass(frozen=True)
class Charge:
    """What choosing a model takes from one quota, and the most that quota may hold before it."""

    quota: QuotaSpec
    amount: int
    soft_limit: int | None  # None: this request may use the headroom up to the hard limit

    @property
    def limit(self) -> int:
        return self.quota.limit


@dataclass
class WalkResult:
    outcome: str
    chosen: ModelSpec | None
    primary: str
    reason: str
    trace: list[dict]
    charges: list[Charge]
    quota_blocked: bool = False
    retry_after: int | None = None

    @property
    def refused(self) -> bool:
        return self.chosen is None


@dataclass(frozen=True)
class Candidates:
    """What a request walks: its route's or tier's models, or their escalation list once the task has failed often enough."""

    models: tuple[str, ...]
    chain: ChainSpec
    category: str | None  # the category named, whose fallback rule applies
    source: str  # "route" or "tier", for reasons
    escalated: bool = False


def _chain(snapshot: PolicySnapshot, request: RouteRequest) -> tuple[ChainSpec, str | None]:
    """The route or tier the request names, and the category slug if one was named."""
    if request.category:
        if request.category not in snapshot.categories:
            valid = sorted(snapshot.categories)
            raise Unroutable("unknown_category", f"Unknown category '{request.category}'. Valid categories: {', '.join(valid)}.", valid)
        route = snapshot.routes.get((request.category, request.complexity))
        if not (route and route.models):
            route = snapshot.routes.get((request.category, Complexity.ANY))
        if not (route and route.models):
            valid = sorted(c for (cat, c), chain in snapshot.routes.items() if cat == request.category and chain.models)
            raise Unroutable(
                "no_route",
                f"Category '{request.category}' has no route for complexity '{request.complexity}'. "
                f"Routes exist for: {', '.join(valid) or 'none'}.",
                valid,
            )
        return route, request.category
    tier = request.tier or snapshot.default_tier
    if not tier:
        valid = sorted(snapshot.categories)
        raise Unroutable("no_default_tier", "The policy has no default tier: name a category or a tier.", valid)
    if tier not in snapshot.tiers:
        valid = sorted(snapshot.tiers)
        raise Unroutable("unknown_tier", f"Unknown tier '{tier}'. Valid tiers: {', '.join(valid)}.", valid)
    if not snapshot.tiers[tier].models:
        valid = sorted(t for t, chain in snapshot.tiers.items() if chain.models)
        raise Unroutable("no_route", f"Tier '{tier}' lists no models. Tiers with models: {', '.join(valid) or 'none'}.", valid)
    return snapshot.tiers[tier], None


def candidates_for(snapshot: PolicySnapshot, request: RouteRequest) -> Candidates:
    """The models the request walks, in order; raises UnknownChoice for what the policy does not have."""
    if request.category and request.tier:
        raise UnknownChoice("invalid_request", "Name either a category or a tier, not both.", [])
    if unknown := sorted(request.exclude - set(snapshot.models)):
        valid = sorted(snapshot.models)
        raise UnknownChoice("unknown_model", f"Unknown model(s) to exclude: {', '.join(unknown)}. Valid models: {', '.join(valid)}.", valid)
    chain, category = _chain(snapshot, request)
    source = "route" if category else "tier"
    _check_context_windows(snapshot, request, chain, category)
    if chain.escalation and chain.escalate_after is not None and request.attempt > chain.escalate_after:
        candidates = Candidates(chain.escalation, chain, category, source, escalated=True)
    else:
        candidates = Candidates(chain.models, chain, category, source)
    _check_apis(snapshot, request, candidates)
    return candidates


def _owner(snapshot: PolicySnapshot, request: RouteRequest, category: str | None) -> str:
    return f"route for {category}/{request.complexity}" if category else f"tier {request.tier or snapshot.default_tier}"


def _check_apis(snapshot: PolicySnapshot, request: RouteRequest, candidates: Candidates) -> None:
    """Raises Unroutable when the caller can call none of the candidates' APIs, naming the APIs that would serve."""
    if request.apis is None:
        return
    models = [snapshot.models[key] for key in candidates.models if key in snapshot.models]
    if not models or any(request.can_call(model) for model in models):
        return
    serving = sorted({model.provider_kind for model in models})
    which = "escalation list" if candidates.escalated else "models"
    raise Unroutable("api", f"No model of the {_owner(snapshot, request, candidates.category)} is served by an API the request "
                     f"can call ({', '.join(sorted(request.apis))}): its {which} are served by {', '.join(serving)}. Call it with "
                     "one of those APIs, or add a model served by yours to it.", serving)


def _check_context_windows(snapshot: PolicySnapshot, request: RouteRequest, chain: ChainSpec, category: str | None) -> None:
    """Raises Unroutable when the estimate exceeds the context window of every model the request could walk."""
    needed = request.estimated_input_tokens + request.estimated_output_tokens
    if needed <= chain.largest_context_window:
        return
    windows = {key: snapshot.models[key].context_window for key in chain.models + chain.escalation if key in snapshot.models}
    if not windows:
        return
    largest = max(windows, key=windows.get)
    raise Unroutable("context_window", f"The estimate of {needed:,} tokens exceeds the context window of every model of the "
                     f"{_owner(snapshot, request, category)} "
                     f"(the largest is {largest}'s, {windows[largest]:,} tokens): send a smaller request, or add a model with a "
                     "larger context window to it.", sorted(windows))


def charges_for(model: ModelSpec, request: RouteRequest, may_use_headroom: bool) -> list[Charge]:
    reserved = reservation(model, request.estimated_input_tokens, request.estimated_output_tokens, request.estimated_cache_read_tokens)
    return [Charge(quota=quota, amount=amount(quota, reserved), soft_limit=None if may_use_headroom else quota.soft_limit)
            for quota in model.quotas]


def admits(charge: Charge, used: int) -> bool:
    """The quota rule of the routing spec: pressure is `used >= soft limit` or `used + estimate > limit`."""
    if used + charge.amount > charge.limit:
        return False
    return charge.soft_limit is None or used < charge.soft_limit


def _quota_entry(charge: Charge, reading: QuotaReading) -> dict:
    quota = charge.quota
    return {
        "quota": quota.label,
        "quota_id": quota.id,
        "metric": quota.metric,
        "window": quota.window,
        "reset": quota.reset,
        "used": display_amount(quota, reading.used),
        "estimate": display_amount(quota, charge.amount),
        "soft_limit": display_amount(quota, quota.soft_limit),
        "limit": display_amount(quota, quota.limit),
        "frees_at": reading.frees_at,
    }


def _describe_quota(entry: dict) -> str:
    limit_kind = "hard limit" if entry["used"] + entry["estimate"] > entry["limit"] else "soft limit"

    def amount(value: float | int) -> str:
        return f"${value:,.2f}" if entry["metric"] == Metric.COST_USD else f"{value:,}"

    return (
        f"quota {entry['quota']} ({entry['metric']} per {entry['window']}) at {limit_kind}: used {amount(entry['used'])}"
        f" + estimate {amount(entry['estimate'])} of limit {amount(entry['limit'])} (soft {amount(entry['soft_limit'])})"
    )


def _short_of(limits: RateLimitState, model: ModelSpec, request: RouteRequest, now: float) -> tuple[str, int, float] | None:
    """The limit the provider's last headers leave too little of for this call, as the provider counts it:
    (what, remaining, reset time), or None."""
    reserved = reservation(model, request.estimated_input_tokens, request.estimated_output_tokens, request.estimated_cache_read_tokens)
    for what, remaining, reset_at, needed in (
        ("requests", limits.requests_remaining, limits.requests_reset_at, 1),
        ("tokens", limits.tokens_remaining, limits.tokens_reset_at, max(reserved.counted_tokens, 1)),
        ("input tokens", limits.input_tokens_remaining, limits.input_tokens_reset_at, reserved.counted_input_tokens),
        ("output tokens", limits.output_tokens_remaining, limits.output_tokens_reset_at, reserved.counted_output_tokens),
    ):
        if remaining is not None and remaining < needed and (reset_at or 0) > now:
            return what, remaining, reset_at
    return None


def _skipped(entry: dict, reason: SkipReason, detail: str, **extra) -> tuple[dict, list[Charge]]:
    return entry | {"verdict": Verdict.SKIPPED, "reason": reason, "detail": detail, **extra}, []


def _check(model: ModelSpec | None, key: str, request: RouteRequest, readings: Readings, now: float,
           seen: set[str], headroom: bool, unavailable: frozenset[str]) -> tuple[dict, list[Charge]]:
    """One candidate's trace entry (verdict 'skipped' with a reason, or 'chosen') and its charges."""
    entry: dict = {"model": key, "provider": model.provider if model else None}
    if key in request.exclude:
        return _skipped(entry, SkipReason.EXCLUDED, "the request excluded it (it has just failed for this task)")
    if model is None:
        return _skipped(entry, SkipReason.DISABLED, "not in the policy's catalog")
    if not request.can_call(model):
        return _skipped(entry, SkipReason.API, f"its provider speaks {model.provider_kind}, not an API the request can call "
                                               f"({', '.join(sorted(request.apis or ()))})")
    if key in seen:
        return _skipped(entry, SkipReason.ALREADY_TRIED, "listed earlier in this route")
    if not model.provider_enabled:
        return _skipped(entry, SkipReason.DISABLED, f"provider {model.provider} is disabled")
    if not model.model_enabled:
        return _skipped(entry, SkipReason.DISABLED, "model is disabled")
    if model.availability == Availability.UNAVAILABLE or key in unavailable:
        detail = model.availability_reason if model.availability == Availability.UNAVAILABLE else "marked unavailable in this what-if"
        return _skipped(entry, SkipReason.UNAVAILABLE, detail or "last availability check found it unavailable")
    state = readings.models.get(key) or ModelState()
    if state.cooldown_until and state.cooldown_until > now:
        detail = f"cooling down for {math.ceil(state.cooldown_until - now)} s after {state.cooldown_reason or 'reported failures'}"
        return _skipped(entry, SkipReason.COOLDOWN, detail, until=state.cooldown_until)
    if state.ratelimit and (short := _short_of(state.ratelimit, model, request, now)):
        what, remaining, reset_at = short
        detail = f"provider reported {remaining} {what} remaining until its reset"
        return _skipped(entry, SkipReason.RATE_LIMIT, detail, until=reset_at)
    needed = request.estimated_input_tokens + request.estimated_output_tokens
    if needed > model.context_window:
        return _skipped(entry, SkipReason.CONTEXT_WINDOW, f"estimate of {needed} tokens exceeds its context window of {model.context_window}")
    charges = charges_for(model, request, headroom)
    blocked = [
        _quota_entry(charge, readings.quotas.get(charge.quota.id) or QuotaReading(used=0))
        for charge in charges
        if not admits(charge, (readings.quotas.get(charge.quota.id) or QuotaReading(used=0)).used)
    ]
    if blocked:
        return _skipped(entry, SkipReason.QUOTA, _describe_quota(blocked[0]), quotas=blocked)
    return entry | {"verdict": Verdict.CHOSEN, "reason": "within limits"}, charges


def _retry_after(trace: list[dict], now: float) -> int | None:
    """Seconds until the soonest passed-over candidate could be chosen again: when its quotas free up, its cooldown
    ends or its rate limit resets; None if no reason ends at a known time."""
    times = [entry["until"] for entry in trace if entry.get("until")]
    for entry in trace:
        if entry.get("reason") == SkipReason.QUOTA:
            frees = [q["frees_at"] for q in entry["quotas"]]
            # Nothing counted yet means the estimate alone exceeds the limit: waiting will not help soon.
            times.append(max(frees) if all(f is not None for f in frees) else now + DEFAULT_RETRY_AFTER)
    return max(1, math.ceil(min(times) - now)) if times else None


def walk(snapshot: PolicySnapshot, request: RouteRequest, candidates: Candidates, readings: Readings,
         now: float, unavailable: frozenset[str] = frozenset()) -> WalkResult:
    """The candidate walk over `candidates`, the answer of candidates_for(snapshot, request)."""
    chain = candidates.chain
    # The primary is the route's first model the caller can call: those of other APIs are passed over, never fallen back from.
    primary = next((key for key in chain.models if request.can_call(snapshot.models.get(key))), chain.models[0])
    if chain.max_attempts is not None and request.attempt > chain.max_attempts:
        reason = f"attempt {request.attempt} is past the {chain.max_attempts} attempts its {candidates.source} allows"
        return WalkResult(Outcome.ATTEMPTS_EXHAUSTED, None, primary, reason, [], [])
    category = snapshot.categories.get(candidates.category) if candidates.category else None
    # An escalated task walks its whole escalation list, whatever its category, and may use the headroom.
    never_fallback = bool(category and category.never_fallback) and not candidates.escalated
    headroom = bool(category and category.may_use_headroom) or candidates.escalated

    trace: list[dict] = []
    seen: set[str] = set()
    index = 0  # the candidate's place among those the caller can call
    for key in candidates.models:
        if never_fallback and index > 0:
            break
        entry, charges = _check(snapshot.models.get(key), key, request, readings, now, seen, headroom, unavailable)
        seen.add(key)
        trace.append(entry)
        if entry["verdict"] == Verdict.CHOSEN:
            model = snapshot.models[key]
            passed = "; ".join(f"{e['model']}: {e['reason']}" for e in trace[:-1])
            if candidates.escalated:
                reason = (f"escalated to {key}: attempt {request.attempt} is past the {chain.escalate_after} its {candidates.source}"
                          f" tries before escalating" + (f" ({passed})" if passed else ""))
                return WalkResult(Outcome.ESCALATED, model, primary, reason, trace, charges)
            if index == 0:
                return WalkResult(Outcome.PRIMARY, model, primary, f"primary {key} is within its limits", trace, charges)
            return WalkResult(Outcome.FALLBACK, model, primary, f"fell back to {key} ({passed})", trace, charges)
        if request.can_call(snapshot.models.get(key)):
            index += 1

    quota_blocked = any(e.get("reason") == SkipReason.QUOTA for e in trace)
    if never_fallback:
        skipped = trace[-1]
        reason = (f"category {candidates.category} never falls back, and its primary {primary} was passed over: "
                  f"{skipped['reason']} ({skipped.get('detail', '')})")
        outcome = Outcome.FAILED_FAST
    else:
        which = "escalation candidate" if candidates.escalated else "candidate"
        reason = f"every {which} was passed over: " + "; ".join(f"{e['model']}: {e['reason']}" for e in trace)
        outcome = Outcome.EXHAUSTED
    return WalkResult(outcome, None, primary, reason, trace, [], quota_blocked=quota_blocked, retry_after=_retry_after(trace, now))
