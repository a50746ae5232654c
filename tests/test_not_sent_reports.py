"""A usage report with status `not_sent` (the call never reached the provider) gives back the decision's whole
reservation on every quota, requests included, whatever the provider's rule: OpenAI's limiter refunds nothing it
saw, but it saw nothing."""

from decimal import Decimal
from uuid import UUID

import pytest

from router.counters import flush_ledger
from router.models import Decision, LedgerHour, LedgerMinute, UsageEvent
from tests.calls import quotas_used, report, route
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route


@pytest.fixture
def openai(db):
    provider = ProviderFactory(slug="openai", kind="openai")
    gpt = LLMModelFactory(key="gpt-4o", provider=provider, model_id="gpt-4o", input_cost_per_mtok=Decimal("2.5"),
                          output_cost_per_mtok=Decimal(10))
    LLMModelFactory(key="gpt-4o-mini", provider=provider, model_id="gpt-4o-mini")
    QuotaFactory(provider=provider, name="tpm", metric="tokens", window="minute", limit=100_000, soft_limit_ratio=1)
    QuotaFactory(provider=provider, name="output-tpm", metric="output_tokens", window="minute", limit=100_000, soft_limit_ratio=1)
    QuotaFactory(provider=provider, name="tokens-day", metric="tokens", window="day", limit=10_000_000, soft_limit_ratio=1)
    QuotaFactory(provider=provider, name="dollars-day", metric="cost_usd", window="day", limit=100, soft_limit_ratio=1)
    QuotaFactory(provider=provider, name="rpm", metric="requests", window="minute", limit=100, soft_limit_ratio=1)
    QuotaFactory(provider=provider, name="requests-week", metric="requests", window="week", limit=10_000, soft_limit_ratio=1)
    make_route("general", [gpt])
    return gpt


def test_a_call_not_sent_gives_back_every_token_and_dollar_its_decision_reserved(api, counters, openai):
    decision = route(api, category="general", estimated_input_tokens=1000, estimated_output_tokens=300)
    assert quotas_used(api)["tpm"] == 1000

    body = report(api, decision_id=decision["decision_id"], status="not_sent")

    assert body["status"] == "not_sent"
    assert quotas_used(api) == {"tpm": 0, "output-tpm": 0, "tokens-day": 0, "dollars-day": 0, "rpm": 0, "requests-week": 0}


def test_a_call_not_sent_counts_no_request_in_the_ledger_its_sums_or_a_rebuild(api, counters, openai, settings):
    sent = route(api, category="general", estimated_input_tokens=1000, estimated_output_tokens=300)
    not_sent = route(api, category="general", estimated_input_tokens=1000, estimated_output_tokens=300)
    report(api, decision_id=sent["decision_id"], input_tokens=900, output_tokens=200)
    report(api, decision_id=not_sent["decision_id"], status="not_sent")

    flush_ledger()
    assert dict(Decision.objects.values_list("id", "requests")) == {UUID(sent["decision_id"]): 1, UUID(not_sent["decision_id"]): 0}
    assert [row.entries for row in LedgerMinute.objects.all()] == [1]
    assert [row.entries for row in LedgerHour.objects.all()] == [1]
    assert (quotas_used(api)["rpm"], quotas_used(api)["requests-week"]) == (1, 1)
    if counters == "redis":
        from router.counters import current

        backend = current()
        backend.client.delete(*backend.client.keys(settings.ROUTER_REDIS_PREFIX + "*"))  # what a Redis restart leaves
        assert (quotas_used(api)["rpm"], quotas_used(api)["requests-week"]) == (1, 1)


def test_a_call_reported_as_using_nothing_keeps_its_openai_charge_where_not_sent_does_not(api, counters, openai):
    used_nothing = route(api, category="general", estimated_input_tokens=1000, estimated_output_tokens=300)
    not_sent = route(api, category="general", estimated_input_tokens=1000, estimated_output_tokens=300)

    report(api, decision_id=used_nothing["decision_id"], input_tokens=0, output_tokens=0)
    report(api, decision_id=not_sent["decision_id"], status="not_sent")

    assert quotas_used(api)["tpm"] == 1000


def test_the_ledger_holds_the_release_so_a_rebuild_counts_it_too(api, counters, openai):
    decision = route(api, category="general", estimated_input_tokens=1000, estimated_output_tokens=300)
    report(api, decision_id=decision["decision_id"], status="not_sent", idempotency_key="release-1")

    flush_ledger()
    stored = Decision.objects.get()
    assert (stored.reported, stored.counted_tokens, stored.cost_usd) == (True, 0, 0)
    assert UsageEvent.objects.get().status == "not_sent"
    again = report(api, expect=200, decision_id=decision["decision_id"], status="not_sent", idempotency_key="release-1")
    assert again["status"] == "not_sent"


@pytest.mark.parametrize(("body", "field"), [
    ({"model": "gpt-4o", "status": "not_sent"}, "decision_id"),
    ({"status": "not_sent", "input_tokens": 10}, "status"),
    ({"status": "not_sent", "output_tokens": 1}, "status"),
])
def test_a_not_sent_report_names_its_decision_and_no_tokens(api, openai, body, field):
    decision = route(api, category="general", estimated_input_tokens=1000)
    if field != "decision_id":
        body = body | {"decision_id": decision["decision_id"]}

    refused = report(api, expect=400, **body)

    assert field in refused["fields"]
    assert quotas_used(api)["tpm"] == 1000


def test_a_not_sent_report_naming_another_model_than_its_decisions_is_refused(api, openai):
    decision = route(api, category="general", estimated_input_tokens=1000)

    refused = report(api, expect=400, decision_id=decision["decision_id"], model="gpt-4o-mini", status="not_sent")

    assert "leave the model out" in refused["detail"]
    assert quotas_used(api)["tpm"] == 1000
