"""Routing decisions: choose a model for a request, count it against its quotas and store it; or
refuse, and store that. A dry run and the dashboard's what-if walk the same candidates without
counting or storing anything.
"""

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus

from router import counters, metrics
from router.counters import Counters, RedisUnreachable
from router.counting import Usage, reservation
from router.engine import Candidates, QuotaReading, Readings, RouteRequest, Unroutable, WalkResult, candidates_for, walk
from router.records import DecisionRecord
from router.snapshot import ModelSpec, PolicySnapshot, QuotaSpec, current_snapshot
from switchboard.vocabulary import STATIC_SKIP_REASONS, Outcome, RefusalCode

# A decision that loses the race for the last of a quota reads again and walks again, this many times.
MAX_RACES = 10
# Unroutable requests each process stores per caller and minute; past it they are only counted in /metrics,
# so that a caller stuck in a loop on a broken route cannot fill the ledger.
UNROUTABLE_STORED_PER_MINUTE = 60

class Contended(Exception):
    """Every read and walk of a decision lost the race for the last of a quota to other processes."""


@dataclass(frozen=True)
class Refusal:
    """How the API answers a decision that chose nothing (and how the what-if says it would)."""

    status: HTTPStatus
    code: RefusalCode
    retry_after: int | None

    @property
    def detail(self) -> str:
        """The error's sentence; the decision's `reason` says which candidate was passed over and why."""
        sentence = REFUSAL_SENTENCES[self.code]
        return f"{sentence} Retry in {self.retry_after} s." if self.retry_after is not None else sentence


REFUSAL_SENTENCES = {
    RefusalCode.ATTEMPTS_EXHAUSTED: "The task has used every attempt its route or tier allows.",
    RefusalCode.QUOTA_EXCEEDED: "The category never falls back, and a quota of its primary has no room for this request.",
    RefusalCode.PRIMARY_UNAVAILABLE: "The category never falls back, and its primary cannot take this request now.",
    RefusalCode.NO_CAPACITY: "No candidate can take this request now.",
}


def _now() -> float:
    """The time, to the microsecond the ledger stores: a decision's bucket is the one its stored time falls in."""
    return round(time.time(), 6)


def refusal(decision: DecisionRecord) -> Refusal:
    """429 when a quota was among the reasons or the task has used its attempts, else 503; with Retry-After whenever
    the reasons end at a known time."""
    if decision.outcome == Outcome.ATTEMPTS_EXHAUSTED:
        return Refusal(HTTPStatus.TOO_MANY_REQUESTS, RefusalCode.ATTEMPTS_EXHAUSTED, None)
    if decision.failed_fast:
        code = RefusalCode.QUOTA_EXCEEDED if decision.quota_blocked else RefusalCode.PRIMARY_UNAVAILABLE
    else:
        code = RefusalCode.NO_CAPACITY
    status = HTTPStatus.TOO_MANY_REQUESTS if decision.quota_blocked else HTTPStatus.SERVICE_UNAVAILABLE
    return Refusal(status, code, decision.retry_after)


def _record(result: WalkResult, request: RouteRequest, snapshot: PolicySnapshot, caller: str, now: float,
            decision_id: uuid.UUID | None) -> DecisionRecord:
    chosen = result.chosen
    return DecisionRecord(
        id=decision_id, created_at=datetime.fromtimestamp(now, tz=UTC), caller=caller,
        category=request.category or "", complexity=request.complexity if request.category else "",
        tier="" if request.category else (request.tier or snapshot.default_tier or ""),
        outcome=result.outcome, model_key=chosen.key if chosen else "", provider_slug=chosen.provider if chosen else "",
        primary_key=result.primary, reason=result.reason, trace=result.trace, policy_version=snapshot.version,
        usage=(reservation(chosen, request.estimated_input_tokens, request.estimated_output_tokens, request.estimated_cache_read_tokens)
               if chosen else Usage()),
        model=chosen, charges=tuple(result.charges), retry_after=result.retry_after,
    )


def _candidates(snapshot: PolicySnapshot, request: RouteRequest) -> tuple[Candidates, list[ModelSpec], list[QuotaSpec]]:
    """The request's candidates, their models and every quota covering them; raises UnknownChoice."""
    candidates = candidates_for(snapshot, request)
    models = [snapshot.models[key] for key in dict.fromkeys(candidates.models) if key in snapshot.models]
    quotas = list({quota.id: quota for model in models for quota in model.quotas}.values())
    return candidates, models, quotas


def _likely_choice(snapshot: PolicySnapshot, request: RouteRequest, route: Candidates, now: float) -> WalkResult | None:
    """The walk's answer if no quota, cooldown or rate limit stands in the way, when it depends on nothing else.

    The counters reserve it in the same step as they read (one Redis round trip) only if that holds
    for the chosen model; the candidates before it were passed over whatever the counters say, so
    the walk over the real readings gives this very answer, trace included.
    """
    result = walk(snapshot, request, route, Readings(), now)
    if result.refused or any(entry["reason"] not in STATIC_SKIP_REASONS for entry in result.trace[:-1]):
        return None
    return result


def _decide_on(backend: Counters, snapshot: PolicySnapshot, request: RouteRequest, caller: str,
               decision_id: uuid.UUID | None) -> DecisionRecord:
    route, models, quotas = _candidates(snapshot, request)
    for _ in range(MAX_RACES):
        now = _now()
        likely = _likely_choice(snapshot, request, route, now)
        choice = _record(likely, request, snapshot, caller, now, decision_id or uuid.uuid4()) if likely else None
        readings, reserved = backend.read_and_reserve(snapshot, quotas, models, now, choice)
        if reserved:
            return choice
        decision = _record(walk(snapshot, request, route, readings, now), request, snapshot, caller, now, decision_id or uuid.uuid4())
        if decision.refused:
            backend.store_refusal(decision)
            return decision
        if backend.reserve(decision, now):
            return decision
        # Another process took the room between this read and this reservation: read again.
    raise Contended(f"Other calls took the room this decision was about to reserve {MAX_RACES} times in a row.")


class UnroutableRequest(Exception):
    """A request the policy can never serve (router.engine.Unroutable), with the refusal stored for it (None when
    its caller had already stored UNROUTABLE_STORED_PER_MINUTE of them this minute)."""

    def __init__(self, cause: Unroutable, decision: DecisionRecord | None) -> None:
        super().__init__(cause.detail)
        self.cause = cause
        self.decision = decision


class _UnroutableBudget:
    """How many unroutable requests this process has stored per caller in the current minute."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.minute = 0
        self.stored: dict[str, int] = {}

    def take(self, caller: str, now: float) -> bool:
        with self.lock:
            if int(now // 60) != self.minute:
                self.minute, self.stored = int(now // 60), {}
            if self.stored.get(caller, 0) >= UNROUTABLE_STORED_PER_MINUTE:
                return False
            self.stored[caller] = self.stored.get(caller, 0) + 1
            return True


_unroutable_budget = _UnroutableBudget()


def _refuse_unroutable(backend: Counters, snapshot: PolicySnapshot, request: RouteRequest, caller: str, cause: Unroutable) -> None:
    """Stores the refusal (under an id of its own: a retry of the same request_id after the policy is fixed decides afresh),
    counts it, and raises UnroutableRequest."""
    now = _now()
    decision = DecisionRecord(
        id=uuid.uuid4(), created_at=datetime.fromtimestamp(now, tz=UTC), caller=caller, category=request.category or "",
        complexity=request.complexity if request.category else "", tier="" if request.category else (request.tier or snapshot.default_tier or ""),
        outcome=Outcome.UNROUTABLE, model_key="", provider_slug="", primary_key="", reason=f"{cause.code}: {cause.detail}", trace=[],
        policy_version=snapshot.version,
    )
    metrics.count_unroutable(cause.code)
    stored = _unroutable_budget.take(caller, now)
    if stored:
        try:
            backend.store_refusal(decision)
        except RedisUnreachable as exc:
            counters.fail_over(exc).store_refusal(decision)
    raise UnroutableRequest(cause, decision if stored else None)


def decide(request: RouteRequest, *, caller: str, dry_run: bool = False, decision_id: uuid.UUID | None = None) -> DecisionRecord:
    """Choose a model for the request; unless dry_run, count it against its quotas and store it (under `decision_id`,
    or a new one).

    Raises UnroutableRequest for a request the policy can never serve (stored as a refusal unless dry_run),
    router.engine.UnknownChoice for one the router cannot take, router.counters.CountersUnavailable when
    Redis is down and ROUTER_REDIS_DOWN=refuse, and Contended when other processes kept taking the room it
    was about to reserve.
    """
    snapshot = current_snapshot()
    if dry_run:
        try:
            return what_if(request, caller=caller)[0]
        except Unroutable as exc:
            raise UnroutableRequest(exc, None) from exc
    backend = counters.current()
    try:
        try:
            decision = _decide_on(backend, snapshot, request, caller, decision_id)
        except RedisUnreachable as exc:
            backend = counters.fail_over(exc)
            decision = _decide_on(backend, snapshot, request, caller, decision_id)
    except Unroutable as exc:
        _refuse_unroutable(backend, snapshot, request, caller, exc)
    metrics.count_decision(decision)
    return decision


def what_if(request: RouteRequest, *, caller: str, used_ratio_overrides: dict[int, float] | None = None,
            unavailable: frozenset[str] = frozenset()) -> tuple[DecisionRecord, Readings]:
    """The decision the router would make, and the readings it walked on; nothing counted or stored.

    `used_ratio_overrides` ({quota id: ratio}) and `unavailable` (model keys) are the dashboard's
    assumptions, taking the place of what the counters and the last availability check say.
    """
    snapshot = current_snapshot()
    route, models, quotas = _candidates(snapshot, request)
    now = _now()
    readings = counters.read(snapshot, quotas, models, now)
    for quota in quotas:
        if used_ratio_overrides and quota.id in used_ratio_overrides:
            readings.quotas[quota.id] = QuotaReading(used=round(quota.limit * used_ratio_overrides[quota.id]))
    result = walk(snapshot, request, route, readings, now, unavailable)
    return _record(result, request, snapshot, caller, now, None), readings
