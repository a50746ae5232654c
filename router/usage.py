"""Usage reports: what a call used, counted against its model's quotas and stored in the ledger.

A report naming its decision replaces the estimate the decision reserved with what the call used;
one without counts as reported. A known idempotency key answers the first report again, counted once.
"""

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from router import counters, metrics
from router.counters import Counters, RedisUnreachable
from router.records import DecisionAlreadyReported, DecisionRecord, UsageRecord
from router.snapshot import COST_SCALE, ModelSpec, PolicySnapshot, current_snapshot
from switchboard.vocabulary import UsageStatus


class UsageRejected(Exception):
    def __init__(self, code: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


@dataclass(frozen=True)
class UsageReport:
    """A usage report as a service sends it (router.payloads validates the body)."""

    model: str | None
    input_tokens: int
    output_tokens: int
    status: str = UsageStatus.OK
    decision_id: uuid.UUID | None = None
    idempotency_key: str | None = None
    retry_after: int | None = None
    ratelimit_headers: dict[str, str] = field(default_factory=dict)


def _reported_model(snapshot: PolicySnapshot, report: UsageReport, decision: DecisionRecord | None) -> ModelSpec:
    """The model a report counts against: the one it names, or its decision's."""
    model_key = report.model
    if report.decision_id:
        if decision is None:
            raise UsageRejected("unknown_decision", f"No decision with id {report.decision_id}.")
        if not decision.counted:
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


def _record_on(backend: Counters, snapshot: PolicySnapshot, report: UsageReport, caller: str) -> tuple[UsageRecord, bool]:
    existing, decision = backend.lookup(report.idempotency_key, report.decision_id)
    if existing:
        return existing, False
    model = _reported_model(snapshot, report, decision)
    usage = UsageRecord(
        id=uuid.uuid4(), created_at=datetime.now(tz=UTC), caller=caller, model_key=model.key, provider_slug=model.provider,
        decision_id=report.decision_id, input_tokens=report.input_tokens, output_tokens=report.output_tokens,
        cost_usd=Decimal(model.cost_micro_usd(report.input_tokens, report.output_tokens)) / COST_SCALE,
        status=report.status, idempotency_key=report.idempotency_key or None,
        retry_after=report.retry_after, ratelimit_headers=report.ratelimit_headers,
    )
    try:
        if decision and decision.reported:
            raise DecisionAlreadyReported
        return backend.record_usage(model, usage, decision)
    except DecisionAlreadyReported:
        raise UsageRejected(
            "decision_already_reported",
            f"Usage for decision {report.decision_id} was already reported; retry with the same idempotency_key to repeat a report.",
            status=409,
        ) from None


def record_usage(report: UsageReport, *, caller: str) -> tuple[UsageRecord, bool]:
    """Count and store a usage report; returns (the stored report, created). A known idempotency key counts once.

    Counters refusing (Redis down and ROUTER_REDIS_DOWN=refuse) does not refuse a report: it is
    stored on the database, and Redis is rebuilt from the ledger when it is back.
    """
    snapshot = current_snapshot()
    backend = counters.current(refuse=False)
    try:
        usage, created = _record_on(backend, snapshot, report, caller)
    except RedisUnreachable as exc:
        usage, created = _record_on(counters.fail_over(exc, refuse=False), snapshot, report, caller)
    if created:
        metrics.count_usage(usage.status)
    return usage, created
