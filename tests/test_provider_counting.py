"""Quotas count a call the way its provider's limiter does (docs/architecture.md, README "How Switchboard counts"):
Bedrock's max_tokens reservation and output burndown, Anthropic's uncached input and output limits, OpenAI's
admission charge that is never refunded; other quotas count plainly, cost at the cache prices."""

from decimal import Decimal

import pytest

from providers.models import LLMModel
from tests.calls import audit, quotas_used, report, route
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route

SONNET_4_5 = "anthropic.claude-sonnet-4-5-20250929-v1:0"


@pytest.fixture
def bedrock(db):
    provider = ProviderFactory(slug="bedrock", kind="bedrock", region="us-east-1")
    sonnet = LLMModelFactory(key="bedrock-sonnet-4-5", provider=provider, model_id=SONNET_4_5)
    QuotaFactory(provider=provider, name="sonnet-tpm", metric="tokens", window="minute", limit=4000, soft_limit_ratio=1, models=[sonnet])
    QuotaFactory(provider=provider, name="sonnet-tpd", metric="tokens", window="day", limit=1_000_000, soft_limit_ratio=1, models=[sonnet])
    QuotaFactory(provider=provider, name="sonnet-rpm", metric="requests", window="minute", limit=100, soft_limit_ratio=1, models=[sonnet])
    QuotaFactory(provider=provider, name="sonnet-plan", metric="tokens", window="week", limit=1_000_000, soft_limit_ratio=1, models=[sonnet])
    make_route("bedrock_agent", [sonnet])
    return sonnet


def test_seed_000s_numbers_hold_a_call_that_writes_700_tokens_holds_3500_plus_its_input(api, counters, bedrock):
    decision = route(api, category="bedrock_agent", estimated_input_tokens=100, estimated_output_tokens=700)
    assert quotas_used(api)["sonnet-tpm"] == 800  # input + max_tokens while the call runs

    report(api, decision_id=decision["decision_id"], input_tokens=100, output_tokens=700)

    used = quotas_used(api)
    assert (used["sonnet-tpm"], used["sonnet-tpd"], used["sonnet-rpm"]) == (100 + 5 * 700, 100 + 5 * 700, 1)
    assert used["sonnet-plan"] == 800  # a plan cap counts the tokens the call used, once


def test_a_second_call_that_the_burndown_leaves_no_room_for_falls_back_before_bedrock_throttles(api, counters, bedrock):
    fallback = LLMModelFactory(key="bedrock-haiku", provider=bedrock.provider, model_id="anthropic.claude-3-5-haiku-20241022-v1:0")
    make_route("bedrock_agent", [bedrock, fallback], complexity="medium")
    first = route(api, category="bedrock_agent", estimated_input_tokens=100, estimated_output_tokens=700)
    report(api, decision_id=first["decision_id"], input_tokens=100, output_tokens=700)

    second = route(api, category="bedrock_agent", estimated_input_tokens=100, estimated_output_tokens=700)

    assert second["outcome"] == "fallback"
    assert second["trace"][0]["quotas"][0]["used"] == 3600


def test_bedrock_releases_cache_reads_and_keeps_cache_writes(api, counters, bedrock):
    decision = route(api, category="bedrock_agent", estimated_input_tokens=1300, estimated_output_tokens=100)

    report(api, decision_id=decision["decision_id"], input_tokens=100, cache_read_input_tokens=1000,
           cache_write_input_tokens=200, output_tokens=10)

    used = quotas_used(api)
    assert used["sonnet-tpm"] == 100 + 200 + 5 * 10
    assert used["sonnet-plan"] == 100 + 1000 + 200 + 10


def test_a_model_aws_does_not_burn_down_counts_its_output_once(api, counters, bedrock):
    LLMModel.objects.filter(pk=bedrock.pk).update(model_id="meta.llama3-70b-instruct-v1:0")

    decision = route(api, category="bedrock_agent", estimated_input_tokens=100, estimated_output_tokens=700)
    report(api, decision_id=decision["decision_id"], input_tokens=100, output_tokens=700)

    assert quotas_used(api)["sonnet-tpm"] == 800


def test_a_burndown_rate_set_for_the_model_overrides_the_table(api, counters, bedrock):
    LLMModel.objects.filter(pk=bedrock.pk).update(burndown_rate=3)

    decision = route(api, category="bedrock_agent", estimated_input_tokens=100, estimated_output_tokens=700)
    report(api, decision_id=decision["decision_id"], input_tokens=100, output_tokens=700)

    assert quotas_used(api)["sonnet-tpm"] == 100 + 3 * 700


@pytest.fixture
def anthropic(db):
    provider = ProviderFactory(slug="anthropic", kind="anthropic")
    sonnet = LLMModelFactory(key="claude-sonnet-4-5", provider=provider, model_id="claude-sonnet-4-5",
                             input_cost_per_mtok=Decimal(3), output_cost_per_mtok=Decimal(15),
                             cache_read_cost_per_mtok=Decimal("0.3"), cache_write_cost_per_mtok=Decimal("3.75"))
    for metric in ("input_tokens", "output_tokens", "tokens"):
        QuotaFactory(provider=provider, name=f"{metric}-minute", metric=metric, window="minute", limit=100_000, soft_limit_ratio=1)
    QuotaFactory(provider=provider, name="tokens-day", metric="tokens", window="day", limit=10_000_000, soft_limit_ratio=1)
    QuotaFactory(provider=provider, name="dollars-day", metric="cost_usd", window="day", limit=100, soft_limit_ratio=1)
    make_route("general", [sonnet])
    return sonnet


def test_anthropic_reserves_max_tokens_against_output_and_settles_the_actual_output(api, counters, anthropic):
    decision = route(api, category="general", estimated_input_tokens=1000, estimated_output_tokens=500)
    assert (quotas_used(api)["input_tokens-minute"], quotas_used(api)["output_tokens-minute"]) == (1000, 500)

    report(api, decision_id=decision["decision_id"], input_tokens=100, cache_read_input_tokens=900, output_tokens=120)

    used = quotas_used(api)
    assert (used["input_tokens-minute"], used["output_tokens-minute"], used["tokens-minute"]) == (100, 120, 220)
    assert used["tokens-day"] == 100 + 900 + 120


def test_anthropic_counts_cache_writes_as_input(api, counters, anthropic):
    decision = route(api, category="general", estimated_input_tokens=1000, estimated_output_tokens=500)

    report(api, decision_id=decision["decision_id"], input_tokens=100, cache_write_input_tokens=900, output_tokens=120)

    assert quotas_used(api)["input_tokens-minute"] == 1000


def test_a_cost_quota_prices_cache_reads_and_writes_at_the_cache_prices(api, counters, anthropic):
    decision = route(api, category="general", estimated_input_tokens=1000, estimated_output_tokens=500)

    report(api, decision_id=decision["decision_id"], input_tokens=1_000_000, cache_read_input_tokens=1_000_000,
           cache_write_input_tokens=1_000_000, output_tokens=1_000_000)

    assert quotas_used(api)["dollars-day"] == pytest.approx(3 + 0.3 + 3.75 + 15)


@pytest.fixture
def openai(db):
    provider = ProviderFactory(slug="openai", kind="openai")
    gpt = LLMModelFactory(key="gpt-4o", provider=provider, model_id="gpt-4o")
    QuotaFactory(provider=provider, name="tpm", metric="tokens", window="minute", limit=100_000, soft_limit_ratio=1)
    QuotaFactory(provider=provider, name="tokens-day", metric="tokens", window="day", limit=10_000_000, soft_limit_ratio=1)
    make_route("general", [gpt])
    return gpt


@pytest.mark.parametrize(("estimated_input", "max_tokens", "charged"), [(1000, 300, 1000), (200, 4000, 4000)])
def test_openai_charges_the_larger_of_max_tokens_and_the_input_and_refunds_nothing(api, counters, openai, estimated_input,
                                                                                   max_tokens, charged):
    decision = route(api, category="general", estimated_input_tokens=estimated_input, estimated_output_tokens=max_tokens)
    assert quotas_used(api)["tpm"] == charged

    report(api, decision_id=decision["decision_id"], input_tokens=150, cache_read_input_tokens=50, output_tokens=20)

    used = quotas_used(api)
    assert used["tpm"] == charged
    assert used["tokens-day"] == 150 + 50 + 20


def test_an_openai_call_the_provider_throttled_keeps_its_charge(api, counters, openai):
    decision = route(api, category="general", estimated_input_tokens=1000, estimated_output_tokens=300)

    report(api, decision_id=decision["decision_id"], status="rate_limited", retry_after=2)

    assert quotas_used(api)["tpm"] == 1000


def test_a_call_that_bedrock_throttled_gives_its_reservation_back(api, counters, bedrock):
    decision = route(api, category="bedrock_agent", estimated_input_tokens=100, estimated_output_tokens=700)

    report(api, decision_id=decision["decision_id"], status="rate_limited")

    assert quotas_used(api)["sonnet-tpm"] == 0


def test_the_audit_shows_what_a_call_used_and_what_it_counted(api, counters, bedrock):
    decision = route(api, category="bedrock_agent", estimated_input_tokens=1300, estimated_output_tokens=100)
    answer = report(api, decision_id=decision["decision_id"], input_tokens=100, cache_read_input_tokens=1000,
                    cache_write_input_tokens=200, output_tokens=10)

    assert answer["counted"] == {"tokens": 350, "input_tokens": 300, "output_tokens": 50}
    [row] = audit(api)
    assert (row["input_tokens"], row["cache_read_input_tokens"], row["cache_write_input_tokens"], row["output_tokens"]) == (100, 1000, 200, 10)
    assert row["counted"] == {"tokens": 350, "input_tokens": 300, "output_tokens": 50}
    assert row["reported"] is True


def test_the_models_api_shows_each_models_burndown_rate(api, bedrock):
    LLMModelFactory(key="bedrock-llama", provider=bedrock.provider, model_id="meta.llama3-70b-instruct-v1:0")
    LLMModelFactory(key="bedrock-sonnet-profile", provider=bedrock.provider, model_id=f"us.{SONNET_4_5.replace('4-5', '4')}")

    rates = {row["key"]: row["burndown_rate"] for row in api.get("/api/v1/models").json()["results"]}

    assert rates == {"bedrock-sonnet-4-5": 5, "bedrock-llama": 1, "bedrock-sonnet-profile": 5}
