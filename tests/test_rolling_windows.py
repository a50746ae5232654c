"""Usage leaves a rolling window bucket by bucket, and a calendar window all at once: the Redis
counters, which keep a running total per quota, and the database counters, which sum the ledger's
per-minute rows, read at every moment what a recount of the ledger's rows reads — through
reservations, usage reports replacing estimates, reports without a decision, a repeated idempotency
key taken back, refusals for lack of room and a rebuild."""

import random
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from router.counters import flush_ledger, redis_counters
from router.counters.database import DatabaseCounters
from router.counting import reservation, used
from router.engine import QuotaReading, RouteRequest, charges_for
from router.models import Decision, UsageEvent
from router.records import DecisionRecord, UsageRecord
from router.snapshot import COST_SCALE, current_snapshot
from router.usage import report_charges
from router.windows import bucket_at, bucket_frees_at, bucket_start, oldest_counted_bucket
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory


@pytest.fixture
def policy(db, redis_client):
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai, input_cost_per_mtok=Decimal("2.5"), output_cost_per_mtok=Decimal(10))
    QuotaFactory(provider=openai, name="rpm", metric="requests", window="minute", limit=5, soft_limit_ratio=1)
    QuotaFactory(provider=openai, name="tokens-hour", metric="tokens", window="hour", limit=10_000_000, soft_limit_ratio=1)
    QuotaFactory(provider=openai, name="cost-day", metric="cost_usd", window="day", reset="calendar", limit=1000,
                 soft_limit_ratio=1, models=[gpt4o])


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def _decision(snapshot, request: RouteRequest, now: float) -> DecisionRecord:
    model = snapshot.models["gpt-4o"]
    return DecisionRecord(
        id=uuid.uuid4(), created_at=_at(now), caller="test", category="general", complexity="medium", tier="", outcome="primary",
        model_key=model.key, provider_slug=model.provider, primary_key=model.key, reason="", trace=[], policy_version=snapshot.version,
        usage=reservation(model, request.estimated_input_tokens, request.estimated_output_tokens),
        charges=tuple(charges_for(model, request, may_use_headroom=False)),
    )


def _report(snapshot, now: float, input_tokens: int, output_tokens: int, decision=None, idempotency_key=None):
    """A usage report made at `now`, and what it adds to each quota, as router.usage makes them."""
    model = snapshot.models["gpt-4o"]
    report = UsageRecord(
        id=uuid.uuid4(), created_at=_at(now), caller="test", model_key=model.key, provider_slug=model.provider,
        decision_id=decision.id if decision else None, usage=used(model, input_tokens, output_tokens),
        status="ok", idempotency_key=idempotency_key, retry_after=None, ratelimit_headers={},
    )
    return model, report, decision, report_charges(snapshot, model, report, decision, report.created_at.timestamp())


def _recount(quota, now: float) -> QuotaReading:
    """The quota's reading from the ledger's rows one by one: the reference both backends must match."""
    start = _at(bucket_start(quota, oldest_counted_bucket(quota, now)))
    rows = [*Decision.objects.filter(outcome__in=["primary", "fallback"], created_at__gte=start),
            *UsageEvent.objects.filter(decision__isnull=True, created_at__gte=start)]
    rows = [row for row in rows if (row.model_key in quota.model_keys if quota.model_keys else row.provider_slug == quota.provider)]
    used = sum(round(row.cost_usd * COST_SCALE) if quota.metric == "cost_usd" else
               1 if quota.metric == "requests" else row.input_tokens + row.output_tokens for row in rows)
    oldest = min((row.created_at.timestamp() for row in rows), default=None)
    return QuotaReading(used=used, frees_at=bucket_frees_at(quota, bucket_at(quota, oldest)) if used else None)


def _assert_redis_reads_the_ledger(snapshot, now: float) -> None:
    flush_ledger()
    recounted = {quota.id: _recount(quota, now) for quota in snapshot.quotas}
    assert redis_counters().read(snapshot, snapshot.quotas, [], now).quotas == recounted, f"Redis at {now}"
    assert DatabaseCounters().read(snapshot, snapshot.quotas, [], now).quotas == recounted, f"database at {now}"


def test_the_redis_counters_read_what_the_ledger_holds_as_usage_ages_out(policy, redis_client):
    snapshot = current_snapshot()
    counters = redis_counters()
    draw = random.Random(20261122)
    now = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp() - 1500  # crosses midnight
    counters.ensure_built(snapshot, now)
    remembered, refused = [], 0

    for step in range(160):
        now += draw.choice([0.2, 0.5, 1.3, 4, 9, 31, 75])
        action = draw.random()
        if action < 0.55:
            request = RouteRequest(category="general", estimated_input_tokens=draw.randint(1, 5000),
                                   estimated_output_tokens=draw.randint(1, 2000))
            decision = _decision(snapshot, request, now)
            if counters.reserve(decision, now):
                remembered.append(decision)
            else:
                refused += 1
        elif action < 0.75 and remembered:
            decision = remembered.pop(draw.randrange(len(remembered)))
            _, ref = counters.lookup(None, decision.id)
            counters.record_usage(*_report(snapshot, now, draw.randint(1, 5000), draw.randint(1, 2000), decision=ref))
        elif action < 0.9:
            counters.record_usage(*_report(snapshot, now, draw.randint(1, 5000), draw.randint(1, 2000)))
        elif action < 0.95:
            # Repeated after Redis forgot the key: counted again, then taken back when the ledger is written.
            key = f"call-{step}"
            counters.record_usage(*_report(snapshot, now, 700, 300, idempotency_key=key))
            flush_ledger()
            redis_client.delete(counters.idempotency_key(key))
            counters.record_usage(*_report(snapshot, now, 700, 300, idempotency_key=key))
        else:
            counters.invalidate()
            counters.ensure_built(snapshot, now)
        _assert_redis_reads_the_ledger(snapshot, now)

    assert refused > 0, "the requests-per-minute quota should have been full at times"


def test_a_quota_whose_usage_has_all_left_the_window_reads_empty(policy):
    snapshot = current_snapshot()
    rpm = next(q for q in snapshot.quotas if q.name == "rpm")
    counters = redis_counters()
    now = datetime.now(tz=UTC).timestamp()
    request = RouteRequest(category="general", estimated_input_tokens=10, estimated_output_tokens=10)
    counters.ensure_built(snapshot, now)
    for offset in range(5):
        at = now + offset / 100
        assert counters.reserve(_decision(snapshot, request, at), at)

    assert not counters.reserve(_decision(snapshot, request, now + 1), now + 1)
    later = now + 62
    reading = counters.read(snapshot, [rpm], [], later).quotas[rpm.id]
    assert (reading.used, reading.frees_at) == (0, None)
    assert counters.reserve(_decision(snapshot, request, later), later)


def test_a_process_that_waited_out_another_ones_rebuild_does_not_rebuild_again(policy, caplog):
    snapshot = current_snapshot()
    counters = redis_counters()
    now = datetime.now(tz=UTC).timestamp()
    counters.invalidate()
    counters.ensure_built(snapshot, now)  # the process that took the lock first
    caplog.clear()

    # A second process found the marker missing before the first one set it, and takes the lock after.
    counters.ensure_built(snapshot, now)

    assert "Rebuilt Redis counters" not in caplog.text
