"""Failures say what happened: a model the key cannot reach (404) is out of service at once, a failure needs no
token counts, and a refusal whose reasons end at a known time says when to come back."""

import pytest

from providers.models import LLMModel
from router.models import UsageEvent
from tests.calls import report, route
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_route


@pytest.fixture
def chain(db):
    anthropic = ProviderFactory(slug="anthropic", kind="anthropic")
    haiku = LLMModelFactory(key="claude-haiku-4-5", provider=anthropic, availability="available")
    sonnet = LLMModelFactory(key="claude-sonnet-4-5", provider=anthropic)
    make_route("general", [haiku, sonnet])
    return haiku, sonnet


def test_a_not_found_report_takes_the_model_out_of_service_at_once(api, counters, chain):
    decision = route(api, category="general")

    report(api, decision_id=decision["decision_id"], status="not_found")

    haiku = LLMModel.objects.get(key="claude-haiku-4-5")
    assert haiku.availability == "unavailable"
    assert "test-service reported it not found" in haiku.availability_reason
    retry = route(api, category="general")
    assert (retry["model"]["key"], retry["trace"][0]["cause"]) == ("claude-sonnet-4-5", "unavailable")


def test_the_next_availability_refresh_decides_again(api, counters, chain):
    report(api, model="claude-haiku-4-5", status="not_found")

    LLMModel.objects.filter(key="claude-haiku-4-5").update(availability="available", availability_reason="listed by the provider")

    assert route(api, category="general")["model"]["key"] == "claude-haiku-4-5"


@pytest.mark.parametrize("status", ["rate_limited", "error", "not_found"])
def test_a_failure_needs_no_token_counts(api, counters, chain, status):
    answer = report(api, model="claude-sonnet-4-5", status=status)

    assert (answer["status"], answer["input_tokens"], answer["output_tokens"]) == (status, 0, 0)


def test_a_successful_call_must_say_what_it_used(api, chain):
    refusal = report(api, expect=400, model="claude-sonnet-4-5", status="ok", output_tokens=5)

    assert refusal["error"] == "invalid_request"
    assert "input_tokens: This field is required." in refusal["detail"]


def test_a_refusal_whose_reasons_end_at_a_known_time_says_when_with_retry_after(api, counters, chain):
    CategoryFactory(slug="security_auth_change", fallback="never")
    make_route("security_auth_change", [chain[1]])
    report(api, model="claude-sonnet-4-5", status="rate_limited", retry_after=40)

    response = api.post("/api/v1/route", {"category": "security_auth_change"}, format="json")

    assert response.status_code == 503
    assert response.json()["error"] == "primary_unavailable"
    assert 38 <= int(response["Retry-After"]) <= 40


def test_a_refusal_for_reasons_without_an_end_has_no_retry_after(api, counters, chain):
    LLMModel.objects.update(enabled=False)

    response = api.post("/api/v1/route", {"category": "general"}, format="json")

    assert response.status_code == 503
    assert "Retry-After" not in response


@pytest.mark.parametrize(("fields", "named"), [
    ({"cache_read_input_tokens": -1}, "cache_read_input_tokens"),
    ({"cache_write_input_tokens": 10**12}, "cache_write_input_tokens"),
    ({"cache_read_input_tokens": "5"}, "cache_read_input_tokens"),
])
def test_negative_or_absurd_cache_counts_are_refused_and_nothing_is_stored(api, counters, chain, fields, named):
    refusal = report(api, expect=400, model="claude-sonnet-4-5", input_tokens=1, output_tokens=1, **fields)

    assert named in refusal["detail"]
    assert UsageEvent.objects.count() == 0


def test_cache_writes_reported_for_an_openai_model_are_refused(api, counters, db):
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt = LLMModelFactory(key="gpt-4o", provider=openai)
    QuotaFactory(provider=openai, metric="tokens", window="minute", limit=1000)
    make_route("general", [gpt])

    refusal = report(api, expect=400, model="gpt-4o", input_tokens=10, output_tokens=1, cache_write_input_tokens=5)

    assert "cache_read_input_tokens" in refusal["detail"]
    assert UsageEvent.objects.count() == 0
