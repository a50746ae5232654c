"""The ledger's per-minute sums (LedgerMinute), kept by database triggers, equal a recount of the ledger
after every kind of write: decisions of each outcome, usage reports with and without a decision, a
repeated idempotency key, and updates and deletes made outside the API. The burn-rate forecast
reads them."""

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from router.counters import flush_ledger
from router.models import Category, Decision, LedgerMinute, UsageEvent
from switchboard.vocabulary import ProviderKind
from tests.calls import report, route
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_route


def minute_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def recount() -> dict[tuple, tuple]:
    """The ledger summed per minute, outcome and model, in Python, leaving out what sums to nothing."""
    sums: dict[tuple, Counter] = {}
    for d in Decision.objects.all():
        key = (minute_of(d.created_at), d.outcome, d.model_key, d.provider_slug)
        sums.setdefault(key, Counter()).update(entries=d.requests, input=d.input_tokens, output=d.output_tokens, cost=d.cost_usd)
    for e in UsageEvent.objects.filter(decision__isnull=True):
        key = (minute_of(e.created_at), LedgerMinute.REPORTED, e.model_key, e.provider_slug)
        sums.setdefault(key, Counter()).update(entries=1, input=e.input_tokens, output=e.output_tokens, cost=e.cost_usd)
    return {key: (c["entries"], c["input"], c["output"], c["cost"]) for key, c in sums.items() if any(c.values())}


def minutes() -> dict[tuple, tuple]:
    return {
        (row.minute, row.outcome, row.model_key, row.provider_slug): (row.entries, row.input_tokens, row.output_tokens, row.cost_usd)
        for row in LedgerMinute.objects.all()
        if row.entries or row.input_tokens or row.output_tokens or row.cost_usd
    }


@pytest.fixture
def policy(db):
    openai = ProviderFactory(slug="openai", kind=ProviderKind.OPENAI)
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai, input_cost_per_mtok=Decimal("2.5"), output_cost_per_mtok=Decimal(10))
    mini = LLMModelFactory(key="gpt-4o-mini", provider=openai, input_cost_per_mtok=Decimal("0.15"), output_cost_per_mtok=Decimal("0.6"))
    QuotaFactory(provider=openai, name="gpt-4o-rpm", metric="requests", window="minute", limit=2, models=[gpt4o])
    QuotaFactory(provider=openai, name="tokens-day", metric="tokens", window="day", limit=10_000)
    make_route(CategoryFactory(slug="general"), [gpt4o, mini])
    make_route(CategoryFactory(slug="security", fallback=Category.Fallback.NEVER), [gpt4o])


def test_every_write_through_the_api_is_in_its_minute(api, counters, policy):
    first = route(api, category="general", estimated_input_tokens=1000, estimated_output_tokens=200)
    route(api, category="general", estimated_input_tokens=1000, estimated_output_tokens=200)
    fallback = route(api, category="general", estimated_input_tokens=500, estimated_output_tokens=100)
    refusal = route(api, expect=429, category="security")
    route(api, category="general", dry_run=True)
    report(api, decision_id=first["decision_id"], model="gpt-4o", input_tokens=900, output_tokens=350)
    report(api, model="gpt-4o-mini", input_tokens=40, output_tokens=10, idempotency_key="retried")
    report(api, expect=200, model="gpt-4o-mini", input_tokens=40, output_tokens=10, idempotency_key="retried")
    report(api, model="gpt-4o", input_tokens=7, output_tokens=3, status="rate_limited")
    flush_ledger()

    assert (fallback["model"]["key"], refusal["error"]) == ("gpt-4o-mini", "quota_exceeded")
    assert minutes() == recount()
    by_outcome = Counter()
    for (_, outcome, _, _), (entries, *_) in minutes().items():
        by_outcome[outcome] += entries
    assert by_outcome == {"primary": 2, "fallback": 1, "failed_fast": 1, "reported": 2}


def test_updates_and_deletes_outside_the_api_move_the_sums_too(db, policy):
    now = datetime.now(tz=UTC)
    decision = Decision.objects.create(created_at=now - timedelta(minutes=3), outcome="primary", model_key="gpt-4o",
                                       provider_slug="openai", policy_version=1, input_tokens=100, output_tokens=10, cost_usd="0.01")
    UsageEvent.objects.create(created_at=now, model_key="gpt-4o", provider_slug="openai", decision=decision, input_tokens=80)
    UsageEvent.objects.bulk_create([
        UsageEvent(created_at=now - timedelta(hours=2), model_key="gpt-4o-mini", provider_slug="openai", input_tokens=5),
        UsageEvent(created_at=now - timedelta(hours=2), model_key="gpt-4o-mini", provider_slug="openai", input_tokens=6),
    ])
    assert minutes() == recount()

    Decision.objects.filter(pk=decision.pk).update(input_tokens=80, output_tokens=0, cost_usd="0.0002", reported=True)
    assert minutes() == recount()

    UsageEvent.objects.filter(input_tokens=5).delete()
    assert minutes() == recount()

    decision.delete()  # its report stays, without a decision: it now counts as reported in its own minute
    assert minutes() == recount()
    assert minutes() == {
        (minute_of(now), "reported", "gpt-4o", "openai"): (1, 80, 0, Decimal(0)),
        (minute_of(now - timedelta(hours=2)), "reported", "gpt-4o-mini", "openai"): (1, 6, 0, Decimal(0)),
    }


def test_the_forecast_burns_only_the_last_hour(api, counters, policy):
    UsageEvent.objects.create(created_at=datetime.now(tz=UTC) - timedelta(minutes=61, seconds=5), model_key="gpt-4o",
                              provider_slug="openai", input_tokens=5000)
    UsageEvent.objects.create(created_at=datetime.now(tz=UTC) - timedelta(minutes=30), model_key="gpt-4o",
                              provider_slug="openai", input_tokens=300)
    report(api, model="gpt-4o-mini", input_tokens=200, output_tokens=100)
    flush_ledger()  # what the drain task does every second

    rows = {row["name"]: row for row in api.get("/api/v1/quotas").json()["results"]}

    assert rows["tokens-day"]["forecast"]["burn_per_hour"] == 600
    assert rows["gpt-4o-rpm"]["forecast"]["burn_per_hour"] == 1
    hard_at = datetime.fromisoformat(rows["tokens-day"]["forecast"]["hard_at"]).timestamp()
    assert hard_at == pytest.approx(time.time() + (10_000 - 5600) / 600 * 3600, abs=60)


def test_a_ledger_deleted_after_its_sums_leaves_nothing_behind(db, policy):
    """`manage.py flush` on SQLite deletes the sums' table before the ledger's: the deletes that follow must
    not leave negative sums that would cancel the next rows of the same minute."""
    now = datetime.now(tz=UTC)
    UsageEvent.objects.create(created_at=now, model_key="gpt-4o", provider_slug="openai", input_tokens=50)

    LedgerMinute.objects.all().delete()
    UsageEvent.objects.all().delete()
    assert not LedgerMinute.objects.exists()

    UsageEvent.objects.create(created_at=now, model_key="gpt-4o", provider_slug="openai", input_tokens=70)
    assert minutes() == recount() == {(minute_of(now), "reported", "gpt-4o", "openai"): (1, 70, 0, Decimal(0))}
