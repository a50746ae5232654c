"""`exclude` on POST /api/v1/route: the models a service has just seen fail for this task are passed over first,
so that its retry goes straight to the next candidate."""

import pytest

from router.models import Decision
from tests.calls import quotas_used, route
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_route


@pytest.fixture
def chain(db):
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai)
    mini = LLMModelFactory(key="gpt-4o-mini", provider=openai)
    QuotaFactory(provider=openai, name="gpt-4o-tokens", metric="tokens", window="day", limit=1000, models=[gpt4o])
    make_route("general", [gpt4o, mini])
    return gpt4o, mini


def test_an_excluded_model_is_passed_over_with_reason_excluded(api, counters, chain):
    answer = route(api, category="general", estimated_input_tokens=100, exclude=["gpt-4o"])

    assert (answer["outcome"], answer["model"]["key"]) == ("fallback", "gpt-4o-mini")
    assert answer["trace"][0] == {"model": {"key": "gpt-4o", "provider": "openai"}, "verdict": "skipped", "cause": "excluded",
                                  "reason": "the request excluded it (it has just failed for this task)", "until": None, "quotas": []}


def test_an_excluded_model_reserves_nothing(api, counters, chain):
    route(api, category="general", estimated_input_tokens=100, exclude=["gpt-4o"])

    assert quotas_used(api)["gpt-4o-tokens"] == 0


def test_a_category_that_never_falls_back_is_refused_when_its_primary_is_excluded(api, counters, chain):
    CategoryFactory(slug="security_auth_change", fallback="never")
    make_route("security_auth_change", list(chain))

    response = api.post("/api/v1/route", {"category": "security_auth_change", "exclude": ["gpt-4o"]}, format="json")

    assert response.status_code == 503
    assert (response.json()["error"], response.json()["outcome"]) == ("primary_unavailable", "failed_fast")
    assert [entry["cause"] for entry in response.json()["trace"]] == ["excluded"]


def test_unknown_models_to_exclude_are_refused_naming_them_and_nothing_is_stored(api, counters, chain):
    response = api.post("/api/v1/route", {"category": "general", "exclude": ["gpt-5", "gpt-4o", "o9"]}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "unknown_model"
    assert "gpt-5, o9" in response.json()["detail"]
    assert Decision.objects.count() == 0


@pytest.mark.parametrize("exclude", ["gpt-4o", [""], [5], ["gpt 4o"], ["a" * 101]])
def test_an_exclude_that_is_not_a_list_of_model_keys_is_refused(api, chain, exclude):
    response = api.post("/api/v1/route", {"category": "general", "exclude": exclude}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "exclude" in response.json()["detail"]
