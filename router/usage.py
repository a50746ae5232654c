"""Usage reports: what a call used, counted against its model's quotas and stored in the ledger.

A report naming its decision replaces the estimate the decision reserved with what the call used;
one without counts as reported. When another model answered than the one the decision chose (a
provider's server-side fallback), the report counts against the model that answered and the
decision's reservation is released. A known idempotency key answers the first report again,
counted once. A `not_found` report takes the model out of service until a one-token probe answers or a person
clears it; a `not_sent` report gives its decision's whole reservation back.
"""

import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import msgspec

from providers.models import LLMModel
from router import counters, metrics
from router.counters import Counters, RedisUnreachable
from router.counting import Usage, charges, used
from router.database_outage import DATABASE_ERRORS
from router.payloads import UsageReport
from router.records import DecisionAlreadyReported, DecisionRecord, UsageRecord
from router.snapshot import ModelSpec, PolicySnapshot, QuotaSpec, current_snapshot, forget_snapshot
from switchboard.vocabulary import Availability, ProviderKind, UsageStatus

logger = logging.getLogger(__name__)


class UsageRejected(Exception):
    def __init__(self, code: str, detail: str, status: int = 400, retry_after: int | None = None, **extra) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        self.extra = extra



def _model(snapshot: PolicySnapshot, key: str) -> ModelSpec:
    model = snapshot.models.get(key)
    if model is None:
        raise UsageRejected("unknown_model", f"Unknown model '{key}'. Valid models: {', '.join(sorted(snapshot.models))}.")
    return model


def _answering_model(snapshot: PolicySnapshot, report: UsageReport, decision: DecisionRecord | None) -> ModelSpec:
    """The model the report counts against: the one that answered (the report's), else its decision's."""
    if report.decision_id:
        if decision is None:
            raise UsageRejected("unknown_decision", f"No decision with id {report.decision_id}.", status=404)
        if not decision.counted:
            raise UsageRejected("decision_refused", f"Decision {decision.id} was a refusal ({decision.outcome}): no call was routed.")
    key = report.model or (decision.model_key if decision else None)
    if not key:
        raise UsageRejected("invalid_request", "Name the model, or the decision_id of the routing decision.")
    model = _model(snapshot, key)
    if model.provider_kind in (ProviderKind.OPENAI, ProviderKind.OPENAI_COMPATIBLE) and report.cache_write_input_tokens:
        raise UsageRejected("invalid_request", f"Model '{key}' speaks the OpenAI API, which reports no cache writes: "
                                               "send its cached prompt tokens as cache_read_input_tokens.")
    return model


def report_charges(snapshot: PolicySnapshot, model: ModelSpec, usage: UsageRecord, decision: DecisionRecord | None,
             now: float) -> list[tuple[QuotaSpec, int, float]]:
    """What the report adds to each quota: the change from its decision's reservation to what the call
    used, in the decision's bucket (all of the reservation, the request included, taken back for a call not
    sent); or, without a decision (or when another model answered, whose decision's reservation is
    released), what the call used, now."""
    if decision is None:
        return charges(model, usage.usage, now, now)
    at = decision.created_at.timestamp()
    if usage.status == UsageStatus.NOT_SENT:
        return charges(model, Usage() - decision.usage, at, now)
    held = replace(decision.usage, entries=0)
    if not usage.answered_instead:
        return charges(model, replace(usage.usage, entries=0) - held, at, now)
    chosen = snapshot.models.get(decision.model_key)
    released = charges(chosen, Usage() - held, at, now) if chosen else []
    return released + charges(model, usage.usage, now, now)

def _out_of_reach(report: UsageReport) -> UsageReport:
    """A report naming a decision that is not in the database while Redis is down: the decision may wait
    in the Redis stream, out of reach. Counted on its own model (the decision's reservation, if Redis
    still holds it, stays counted too: over, never under), or refused for a retry when it names no model."""
    if not report.model:
        raise UsageRejected(
            "counters_unavailable",
            f"Decision {report.decision_id} may be held by Redis, which cannot be reached: retry later, or name the model.",
            status=503, retry_after=5,
        )
    logger.warning("Usage report for decision %s, which Redis (unreachable) may hold, counted on model %s alone",
                   report.decision_id, report.model)
    return msgspec.structs.replace(report, decision_id=None)


def _repeated(first: UsageRecord, report: UsageReport) -> UsageRecord:
    """The first report under an idempotency key, when `report` repeats it; else 409 naming it."""
    stored = {"input_tokens": first.usage.input_tokens, "output_tokens": first.usage.output_tokens,
              "cache_read_input_tokens": first.usage.cache_read_input_tokens,
              "cache_write_input_tokens": first.usage.cache_write_input_tokens, "status": first.status, "retry_after": first.retry_after}
    differing = [name for name, value in stored.items() if getattr(report, name) != value]
    if report.model and report.model != first.model_key:
        differing.append("model")
    # A report stored while its decision was out of reach (Redis down) was stored without it.
    if report.decision_id and first.decision_id and report.decision_id != first.decision_id:
        differing.append("decision_id")
    if differing:
        raise UsageRejected(
            "idempotency_key_reused",
            f"Idempotency key {report.idempotency_key!r} was used for usage report {first.id} (decision "
            f"{first.decision_id or 'none'}), which differs in {', '.join(differing)}: use a new key for a new report.",
            status=409, usage_id=str(first.id),
        )
    return first


def _record_on(backend: Counters, snapshot: PolicySnapshot, report: UsageReport, caller: str) -> tuple[UsageRecord, bool]:
    existing, decision = backend.lookup(report.idempotency_key, report.decision_id)
    if existing:
        return _repeated(existing, report), False
    if report.decision_id and decision is None and backend.lost_at is not None:
        report = _out_of_reach(report)
    model = _answering_model(snapshot, report, decision)
    answered_instead = bool(decision and model.key != decision.model_key)
    now = datetime.now(tz=UTC)
    if report.status == UsageStatus.NOT_SENT:
        if answered_instead:
            raise UsageRejected("invalid_request", f"A not_sent report gives back the reservation of decision {decision.id}, "
                                                   f"which chose {decision.model_key}: leave the model out.")
        # Nothing reached the provider, so nothing counts, whatever its rule (OpenAI's limiter refunds nothing it saw).
        call_usage = Usage()
    else:
        reserved = decision.usage if decision and not answered_instead else None
        call_usage = used(model, report.input_tokens, report.output_tokens, report.cache_read_input_tokens,
                          report.cache_write_input_tokens, reserved=reserved)
    usage = UsageRecord(
        id=uuid.uuid4(), created_at=now, caller=caller, model_key=model.key, provider_slug=model.provider,
        decision_id=report.decision_id, status=report.status, idempotency_key=report.idempotency_key or None,
        retry_after=report.retry_after, ratelimit_headers=report.ratelimit_headers, answered_instead=answered_instead,
        usage=call_usage,
    )
    try:
        if decision and decision.reported:
            raise DecisionAlreadyReported
        stored, created = backend.record_usage(model, usage, decision, report_charges(snapshot, model, usage, decision, now.timestamp()))
    except DecisionAlreadyReported:
        raise UsageRejected(
            "decision_already_reported",
            f"Usage for decision {report.decision_id} was already reported; retry with the same idempotency_key to repeat a report.",
            status=409,
        ) from None
    return (stored, True) if created else (_repeated(stored, report), False)


def _mark_unavailable(usage: UsageRecord) -> None:
    """A key that cannot reach the model: out of service at once, and until a one-token probe of the availability
    refresh answers or a person clears it (LLMModel.clear_not_found); a listing naming it does not bring it back.

    Setting `checked_at` moves the policy snapshot's fingerprint, so every other process sees it within
    ROUTER_POLICY_RECHECK_SECONDS, and this one at its next decision.
    """
    reason = (f"{usage.caller or 'a service'} reported it not found at {usage.created_at:%Y-%m-%d %H:%M:%S} UTC;"
              " out of routing until a one-token probe answers or a person clears it")
    try:
        LLMModel.objects.filter(key=usage.model_key).update(
            availability=Availability.UNAVAILABLE, availability_reason=reason, checked_at=usage.created_at, not_found_at=usage.created_at,
        )
    except DATABASE_ERRORS:
        # The report is counted and on its way to the ledger; answering 503 now would have it sent and counted twice.
        logger.error("Model %s reported not found, but the database cannot be reached to take it out of service", usage.model_key)
        return
    forget_snapshot()


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
        if usage.status == UsageStatus.NOT_FOUND:
            _mark_unavailable(usage)
        metrics.count_usage(usage.status)
    return usage, created
