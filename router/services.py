"""Routing services: decide (walk + reserve + store), record usage, and read quota status."""

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from router import metrics
from router.accounting import (
    COUNTED_OUTCOMES,
    Counters,
    CountersUnavailable,
    DatabaseCounters,
    DecisionAlreadyReported,
    DecisionRef,
    run_with_counters,
    settle_ledger,
    usage_by_minute,
)
from router.engine import QuotaReading, Readings, RouteRequest, WalkResult, candidates_for, walk
from router.models import Decision, UsageEvent
from router.snapshot import COST_SCALE, ModelSpec, PolicySnapshot, current_snapshot
from router.windows import bucket_at, bucket_frees_at

# A decision that loses the race for the last of a quota re-reads and walks again, this many times.
MAX_ATTEMPTS = 10


class UsageRejected(Exception):
    def __init__(self, code: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


@dataclass
class DecisionResult:
    walk: WalkResult
    policy_version: int
    decision_id: uuid.UUID | None
    request: RouteRequest
    tier: str | None = None
    readings: Readings = field(default_factory=Readings)


def _resolved_tier(snapshot: PolicySnapshot, request: RouteRequest) -> str | None:
    return None if request.category else (request.tier or snapshot.default_tier)


def _decision(result: WalkResult, request: RouteRequest, snapshot: PolicySnapshot, caller: str, now: float) -> Decision:
    counted = result.chosen is not None
    estimate_in = request.estimated_input_tokens if counted else 0
    estimate_out = request.estimated_output_tokens if counted else 0
    cost = Decimal(result.chosen.cost_micro_usd(estimate_in, estimate_out)) / COST_SCALE if counted else Decimal(0)
    return Decision(
        id=uuid.uuid4(), created_at=datetime.fromtimestamp(now, tz=UTC), caller=caller,
        category=request.category or "", complexity=request.complexity if request.category else "",
        tier=_resolved_tier(snapshot, request) or "", outcome=result.outcome,
        model_key=result.chosen.key if counted else "", provider_slug=result.chosen.provider if counted else "",
        primary_key=result.primary, reason=result.reason, trace=result.trace, policy_version=snapshot.version,
        input_tokens=estimate_in, output_tokens=estimate_out, cost_usd=cost,
    )


# Reasons to pass a candidate over that do not depend on the counters.
STATIC_REASONS = frozenset({"disabled", "already_tried", "unavailable", "context_window"})


def _likely_choice(snapshot: PolicySnapshot, request: RouteRequest, route: tuple[tuple[str, ...], str | None],
                   now: float) -> WalkResult | None:
    """The walk's answer if no quota, cooldown or rate limit stands in the way, when it depends on nothing else.

    The counters reserve it in the same step as they read (one Redis round trip) only if that holds
    for the chosen model; the candidates before it were passed over whatever the counters say, so
    the walk over the real readings gives this very answer, trace included.
    """
    result = walk(snapshot, request, route, Readings(), now)
    if result.refused or any(entry["reason"] not in STATIC_REASONS for entry in result.trace[:-1]):
        return None
    return result


def decide(request: RouteRequest, *, caller: str, dry_run: bool = False,
           used_ratio_overrides: dict[int, float] | None = None, unavailable: frozenset[str] = frozenset()) -> DecisionResult:
    """Choose a model for the request; unless dry_run, count it against its quotas and store it.

    `used_ratio_overrides` ({quota id: ratio}) and `unavailable` are the what-if page's assumptions;
    they only make sense with dry_run.
    """
    snapshot = current_snapshot()
    route = candidates_for(snapshot, request)
    models = [snapshot.models[k] for k in dict.fromkeys(route[0]) if k in snapshot.models]
    quotas = list({q.id: q for m in models for q in m.quotas}.values())

    def operation(counters: Counters) -> DecisionResult:
        for _ in range(MAX_ATTEMPTS):
            now = time.time()
            likely = None if dry_run or used_ratio_overrides or unavailable else _likely_choice(snapshot, request, route, now)
            choice = (likely.charges, _decision(likely, request, snapshot, caller, now)) if likely else None
            readings, reserved = counters.read_and_reserve(snapshot, quotas, models, now, choice)
            if reserved:
                metrics.count_decision(likely)
                return DecisionResult(likely, snapshot.version, choice[1].id, request, _resolved_tier(snapshot, request), readings)
            for quota in quotas:
                if used_ratio_overrides and quota.id in used_ratio_overrides:
                    readings.quotas[quota.id] = QuotaReading(used=round(quota.limit * used_ratio_overrides[quota.id]))
            result = walk(snapshot, request, route, readings, now, unavailable)
            if dry_run:
                return DecisionResult(result, snapshot.version, None, request, _resolved_tier(snapshot, request), readings)
            decision = _decision(result, request, snapshot, caller, now)
            if result.refused:
                counters.store_refusal(decision)
            elif not counters.reserve(result.charges, now, decision):
                continue  # another process took the room between our read and our reservation
            metrics.count_decision(result)
            return DecisionResult(result, snapshot.version, decision.id, request, _resolved_tier(snapshot, request), readings)
        raise RuntimeError("Could not settle a decision under heavy contention; retry.")

    return run_with_counters(operation)


@dataclass(frozen=True)
class UsageReport:
    model: str | None
    input_tokens: int
    output_tokens: int
    status: str = UsageEvent.Status.OK
    decision_id: uuid.UUID | None = None
    idempotency_key: str | None = None
    retry_after: int | None = None
    ratelimit_headers: dict[str, str] = field(default_factory=dict)


def record_usage(report: UsageReport, *, caller: str) -> tuple[UsageEvent, bool]:
    """Store a usage report and count it; returns (event, created). A known idempotency key counts once."""
    snapshot = current_snapshot()

    def operation(counters: Counters) -> tuple[UsageEvent, bool]:
        existing, decision = counters.lookup(report.idempotency_key, report.decision_id)
        if existing:
            return existing, False
        model = _reported_model(snapshot, report, decision)
        event = UsageEvent(
            id=uuid.uuid4(), created_at=datetime.now(tz=UTC), caller=caller, model_key=model.key, provider_slug=model.provider,
            decision_id=report.decision_id, input_tokens=report.input_tokens, output_tokens=report.output_tokens,
            cost_usd=Decimal(model.cost_micro_usd(report.input_tokens, report.output_tokens)) / COST_SCALE,
            status=report.status, idempotency_key=report.idempotency_key or None,
            retry_after=report.retry_after, ratelimit_headers=report.ratelimit_headers,
        )
        try:
            if decision and decision.reported:
                raise DecisionAlreadyReported
            return counters.record_usage(model, event, decision)
        except DecisionAlreadyReported:
            raise UsageRejected(
                "decision_already_reported",
                f"Usage for decision {report.decision_id} was already reported; retry with the same idempotency_key to repeat a report.",
                status=409,
            ) from None

    try:
        event, created = run_with_counters(operation)
    except CountersUnavailable:
        # Counters refusing does not refuse the report: it is stored, and Redis is rebuilt from the ledger when it is back.
        event, created = operation(DatabaseCounters())
    if created:
        metrics.count_usage(event.status)
    return event, created


def _reported_model(snapshot: PolicySnapshot, report: UsageReport, decision: DecisionRef | None) -> ModelSpec:
    """The model a report counts against: the one it names, or its decision's."""
    model_key = report.model
    if report.decision_id:
        if decision is None:
            raise UsageRejected("unknown_decision", f"No decision with id {report.decision_id}.")
        if decision.outcome not in COUNTED_OUTCOMES:
            raise UsageRejected("decision_refused", f"Decision {decision.id} was a refusal ({decision.outcome}): no call was routed.")
        if model_key and model_key != decision.model_key:
            raise UsageRejected("model_mismatch", f"Decision {decision.id} chose '{decision.model_key}', not '{model_key}'.")
        model_key = decision.model_key
    if not model_key:
        raise UsageRejected("invalid_request", "Name the model, or the decision_id of the routing decision.")
    model = snapshot.models.get(model_key)
    if model is None:
        raise UsageRejected("unknown_model", f"Unknown model '{model_key}'. Valid models: {', '.join(sorted(snapshot.models))}.")
    return model


def quota_status(now: float | None = None) -> list[dict]:
    """Every quota with its usage, when it frees up, and the burn-rate forecast (last hour's rate)."""
    snapshot = current_snapshot()
    now = now or time.time()
    settle_ledger()
    readings = run_with_counters(lambda counters: counters.read(snapshot, snapshot.quotas, [], now))
    last_hours = usage_by_minute(snapshot.quotas, now - 3600, now)
    status = []
    for quota in snapshot.quotas:
        reading = readings.quotas.get(quota.id) or QuotaReading(used=0)
        last_hour = last_hours[quota.id]
        rate = last_hour / 3600

        def reaches(level: int, quota=quota, used: int = reading.used, rate: float = rate) -> float | None:
            """When the last hour's rate brings usage to `level`; None if it never does in this window."""
            if used >= level:
                return now
            if rate <= 0:
                return None
            at = now + (level - used) / rate
            # Usage leaves a rolling window (at this rate it levels off at rate x window), and a
            # calendar window resets: a level reached only later than that is never reached.
            horizon = bucket_frees_at(quota, bucket_at(quota, now)) if quota.reset == "calendar" else now + quota.window_seconds
            return at if at <= horizon else None

        status.append({
            "quota": quota, "used": reading.used, "frees_at": reading.frees_at,
            "ratio": reading.used / quota.limit if quota.limit else 0.0,
            "burn_per_hour": last_hour, "soft_at": reaches(quota.soft_limit), "hard_at": reaches(quota.limit),
        })
    return status

