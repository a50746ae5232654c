"""Requests the policy can never serve are client errors (400 `unroutable`, saying what would make them
routable), stored as refusals within a bound per caller, counted in /metrics and shown on the overview."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from router import decisions
from tests.calls import route, stored_decisions
from tests.factories import LLMModelFactory, ProviderFactory, make_api_key, make_route, make_tier

pytestmark = pytest.mark.django_db


@pytest.fixture
def general(db):
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai, context_window=128_000)
    mini = LLMModelFactory(key="gpt-4o-mini", provider=openai, context_window=16_000)
    make_route("general", [gpt4o, mini], complexity="low")
    make_tier("cheap", [mini])


def test_an_unknown_category_is_stored_as_an_unroutable_refusal(api, general, counters):
    body = route(api, expect=400, category="genral", complexity="low")

    assert (body["error"], body["cause"], body["outcome"]) == ("unroutable", "unknown_category", "unroutable")
    stored = stored_decisions().get()
    assert str(stored.id) == body["decision_id"]
    assert (stored.outcome, stored.caller, stored.category, stored.model_key) == ("unroutable", "test-service", "genral", "")
    assert stored.reason.startswith("unknown_category: Unknown category 'genral'. Valid categories: general.")


def test_a_category_without_a_route_for_the_complexity_says_which_routes_exist(api, general, counters):
    body = route(api, expect=400, category="general", complexity="high")

    assert (body["error"], body["cause"], body["valid"]) == ("unroutable", "no_route", ["low"])
    assert stored_decisions().get().outcome == "unroutable"


def test_an_estimate_beyond_every_context_window_is_a_client_error_not_a_503(api, general, counters):
    body = route(api, expect=400, category="general", complexity="low", estimated_input_tokens=200_000, estimated_output_tokens=8_000)

    assert (body["error"], body["cause"]) == ("unroutable", "context_window")
    assert "208,000 tokens exceeds the context window of every model of the route for general/low" in body["detail"]
    assert "the largest is gpt-4o's, 128,000 tokens" in body["detail"]
    assert stored_decisions().get().outcome == "unroutable"


def test_an_estimate_one_model_can_take_is_routed_to_it(api, general):
    body = route(api, category="general", complexity="low", estimated_input_tokens=100_000)

    assert body["model"]["key"] == "gpt-4o"


def test_a_dry_run_stores_nothing(api, general):
    body = route(api, expect=400, category="nope", dry_run=True)

    assert (body["error"], body["decision_id"]) == ("unroutable", None)
    assert not stored_decisions().exists()


def test_a_caller_stores_at_most_the_bound_per_minute_and_every_one_is_answered_and_counted(api, general, monkeypatch):
    monkeypatch.setattr(decisions, "UNROUTABLE_STORED_PER_MINUTE", 3)
    monkeypatch.setattr(decisions, "_unroutable_budget", decisions._UnroutableBudget())
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key('other-service')}")

    answers = [route(api, expect=400, category="nope") for _ in range(5)]
    route(other, expect=400, category="nope")

    assert [answer["decision_id"] is not None for answer in answers] == [True, True, True, False, False]
    assert sorted(stored_decisions().values_list("caller", flat=True)) == ["other-service", "test-service", "test-service", "test-service"]
    metrics = APIClient().get("/metrics").content.decode()
    assert 'switchboard_unroutable_total{error="unknown_category"}' in metrics


def test_the_overview_shows_unroutable_requests_per_caller_and_category(api, admin_client, general):
    for _ in range(3):
        route(api, expect=400, category="general", complexity="high")
    route(api, expect=400, tier="cheapest")

    page = admin_client.get(reverse("dashboard:overview")).content.decode()

    assert "Requests the policy cannot serve" in page
    section = page[page.index('id="unroutable"'):page.index("</table>", page.index('id="unroutable"'))]
    assert "test-service" in section and "category general" in section and "tier cheapest" in section
    assert '<td data-label="Requests">3</td>' in section
    assert "no_route: Category &#x27;general&#x27; has no route for complexity &#x27;high&#x27;" in section
