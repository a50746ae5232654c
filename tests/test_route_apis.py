"""`apis` on POST /api/v1/route: the provider kinds the caller can call. Candidates of other kinds are passed over with
cause `api`, never reserved, stored as fallbacks or counted; a route with none of them is 400 unroutable."""

import pytest

from tests.calls import audit, quotas_used, route, stored_decisions
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_route


@pytest.fixture
def mixed(db):
    openai = ProviderFactory(slug="openai", kind="openai")
    anthropic = ProviderFactory(slug="anthropic", kind="anthropic")
    bedrock = ProviderFactory(slug="bedrock", kind="bedrock", region="us-east-1")
    gpt = LLMModelFactory(key="gpt-4-turbo", provider=openai)
    claude = LLMModelFactory(key="claude-opus-4-5", provider=anthropic)
    nova = LLMModelFactory(key="nova-pro", provider=bedrock)
    QuotaFactory(provider=openai, name="gpt-tokens", metric="tokens", window="day", limit=100_000, models=[gpt])
    QuotaFactory(provider=anthropic, name="claude-requests", metric="requests", window="minute", limit=1, soft_limit_ratio=1.0,
                 models=[claude])
    make_route("mixed", [gpt, claude, nova])
    CategoryFactory(slug="strict", fallback="never")
    make_route("strict", [gpt, claude, nova])
    make_route("openai_only", [gpt])


def test_candidates_of_other_apis_are_passed_over_and_the_first_it_can_call_is_its_primary(api, counters, mixed):
    answer = route(api, category="mixed", estimated_input_tokens=100, apis=["anthropic", "bedrock"])

    assert (answer["outcome"], answer["model"]["key"], answer["primary"]["key"]) == ("primary", "claude-opus-4-5", "claude-opus-4-5")
    assert answer["trace"][0]["cause"] == "api"
    assert answer["trace"][0]["reason"] == "its provider speaks openai, not an API the request can call (anthropic, bedrock)"
    assert quotas_used(api)["gpt-tokens"] == 0
    assert [row["outcome"] for row in audit(api, category="mixed")] == ["primary"]


def test_past_the_callers_primary_it_falls_back_among_the_models_it_can_call(api, counters, mixed):
    route(api, category="mixed", apis=["anthropic", "bedrock"])  # takes claude's one request a minute

    answer = route(api, category="mixed", apis=["anthropic", "bedrock"])

    assert (answer["outcome"], answer["model"]["key"]) == ("fallback", "nova-pro")
    assert [entry["cause"] for entry in answer["trace"]] == ["api", "quota", None]


def test_a_category_that_never_falls_back_takes_the_first_model_the_caller_can_call_as_its_primary(api, counters, mixed):
    assert route(api, category="strict", apis=["anthropic"])["model"]["key"] == "claude-opus-4-5"

    response = api.post("/api/v1/route", {"category": "strict", "apis": ["anthropic"]}, format="json")

    assert response.status_code == 429
    assert response.json()["outcome"] == "failed_fast"
    assert [entry["cause"] for entry in response.json()["trace"]] == ["api", "quota"]


def test_without_apis_every_candidate_may_be_chosen(api, counters, mixed):
    assert route(api, category="mixed")["model"]["key"] == "gpt-4-turbo"


def test_a_route_with_no_model_the_caller_can_call_is_unroutable_naming_the_apis_that_would_serve(api, counters, mixed):
    body = route(api, expect=400, category="openai_only", apis=["anthropic", "bedrock"])

    assert (body["error"], body["cause"], body["valid"]) == ("unroutable", "api", ["openai"])
    assert "served by openai" in body["detail"] and "(anthropic, bedrock)" in body["detail"]
    assert stored_decisions().get().outcome == "unroutable"
    assert quotas_used(api)["gpt-tokens"] == 0


def test_a_request_id_with_other_apis_is_another_request(api, counters, mixed):
    route(api, category="mixed", apis=["anthropic"], request_id="task-1")

    response = api.post("/api/v1/route", {"category": "mixed", "apis": ["bedrock"], "request_id": "task-1"}, format="json")

    assert (response.status_code, response.json()["error"]) == (409, "request_id_reused")


@pytest.mark.parametrize("apis", [[], ["vertex"], "anthropic", ["anthropic", 5]])
def test_apis_that_are_not_a_list_of_provider_kinds_are_refused(api, mixed, apis):
    response = api.post("/api/v1/route", {"category": "mixed", "apis": apis}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "apis" in response.json()["detail"]
    assert not stored_decisions().exists()
