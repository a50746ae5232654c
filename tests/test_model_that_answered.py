"""A usage report may name the model that answered when it is not the one its decision chose (a provider's
server-side fallback): it counts against the model that answered, the decision's reservation is released, and
the audit shows both."""

import pytest

from tests.calls import audit, quotas_used, report, route
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route


@pytest.fixture
def pools(db):
    anthropic = ProviderFactory(slug="anthropic", kind="anthropic")
    opus = LLMModelFactory(key="claude-opus-4-5", provider=anthropic, model_id="claude-opus-4-5")
    sonnet = LLMModelFactory(key="claude-sonnet-4-5", provider=anthropic, model_id="claude-sonnet-4-5")
    QuotaFactory(provider=anthropic, name="opus-pool", metric="tokens", window="week", limit=1_000_000, models=[opus])
    QuotaFactory(provider=anthropic, name="sonnet-pool", metric="tokens", window="week", limit=1_000_000, models=[sonnet])
    QuotaFactory(provider=anthropic, name="requests", metric="requests", window="day", limit=1000)
    make_route("security_auth_change", [opus])
    return opus, sonnet


def test_it_counts_against_the_model_that_answered_and_releases_the_decisions_reservation(api, counters, pools):
    decision = route(api, category="security_auth_change", estimated_input_tokens=2000, estimated_output_tokens=1000)
    assert quotas_used(api)["opus-pool"] == 3000

    answer = report(api, decision_id=decision["decision_id"], model="claude-sonnet-4-5", input_tokens=1500, output_tokens=400)

    assert (answer["model"]["key"], answer["answered_instead"]) == ("claude-sonnet-4-5", True)
    used = quotas_used(api)
    assert (used["opus-pool"], used["sonnet-pool"]) == (0, 1900)
    assert used["requests"] == 2  # the request to the model chosen, and the one that answered


def test_the_audit_shows_both_models(api, counters, pools):
    decision = route(api, category="security_auth_change", estimated_input_tokens=2000, estimated_output_tokens=1000)
    report(api, decision_id=decision["decision_id"], model="claude-sonnet-4-5", input_tokens=1500, output_tokens=400)

    [row] = audit(api)

    assert (row["model"]["key"], row["answered_by"], row["reported"]) == (
        "claude-opus-4-5", {"key": "claude-sonnet-4-5", "provider": "anthropic"}, True)
    assert (row["input_tokens"], row["output_tokens"]) == (0, 0)
    csv_text = api.get("/api/v1/decisions", {"format": "csv"}).getvalue().decode()
    assert "claude-sonnet-4-5" in csv_text.splitlines()[1]


def test_a_report_naming_the_decisions_own_model_settles_it_as_usual(api, counters, pools):
    decision = route(api, category="security_auth_change", estimated_input_tokens=2000, estimated_output_tokens=1000)

    answer = report(api, decision_id=decision["decision_id"], model="claude-opus-4-5", input_tokens=1500, output_tokens=400)

    assert answer["answered_instead"] is False
    assert quotas_used(api)["opus-pool"] == 1900


def test_an_unknown_answering_model_is_refused_naming_the_valid_ones_and_nothing_is_counted(api, counters, pools):
    decision = route(api, category="security_auth_change", estimated_input_tokens=2000, estimated_output_tokens=1000)

    refusal = report(api, expect=400, decision_id=decision["decision_id"], model="claude-haiku-9", input_tokens=1, output_tokens=1)

    assert refusal["error"] == "unknown_model"
    assert "claude-opus-4-5, claude-sonnet-4-5" in refusal["detail"]
    assert quotas_used(api)["opus-pool"] == 3000
    assert audit(api)[0]["reported"] is False
