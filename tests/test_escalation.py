"""Escalation and retry limits (seed 004: the strongest model for phases that keep failing; seed 001: "auto-escalate
after 2 failures", "max 3 attempts"): a route's `escalate_after`, `escalation` list and `max_attempts`."""

import re

import pytest

from providers.models import LLMModel
from router.models import Decision, Route, RouteEscalation
from router.policy.apply import apply_policy
from router.policy.export import export_policy
from router.policy.fields import PolicyError
from tests.calls import audit, route
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_route


def escalate(chain: Route, models: list[LLMModel], after: int, max_attempts: int | None = None) -> None:
    Route.objects.filter(pk=chain.pk).update(escalate_after=after, max_attempts=max_attempts)
    for position, model in enumerate(models):
        RouteEscalation.objects.create(route=chain, model=model, position=position)


def disable(model: LLMModel) -> None:
    model.enabled = False
    model.save()  # an edit: it bumps the policy version every process rechecks


@pytest.fixture
def models(db):
    anthropic = ProviderFactory(slug="anthropic", kind="anthropic")
    return {key: LLMModelFactory(key=key, provider=anthropic, model_id=key)
            for key in ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5", "claude-opus-4-1")}


@pytest.fixture
def general(models):
    chain = make_route("general", [models["claude-sonnet-4-5"], models["claude-haiku-4-5"]])
    escalate(chain, [models["claude-opus-4-5"]], after=2, max_attempts=3)
    return chain


def test_attempts_up_to_escalate_after_walk_the_route(api, counters, general):
    for attempt in (1, 2):
        answer = route(api, category="general", attempt=attempt)
        assert (answer["outcome"], answer["model"]["key"]) == ("primary", "claude-sonnet-4-5")


def test_an_attempt_past_escalate_after_walks_the_escalation_list_and_says_so(api, counters, general):
    answer = route(api, category="general", attempt=3)

    assert (answer["outcome"], answer["model"]["key"], answer["primary"]["key"]) == ("escalated", "claude-opus-4-5", "claude-sonnet-4-5")
    assert answer["reason"].startswith("escalated to claude-opus-4-5: attempt 3 is past the 2 its route tries before escalating")
    assert [(row["outcome"], row["model"]["key"]) for row in audit(api)] == [("escalated", "claude-opus-4-5")]


def test_an_attempt_past_max_attempts_is_refused_with_429_and_stored(api, counters, general):
    response = api.post("/api/v1/route", {"category": "general", "attempt": 4}, format="json")

    assert response.status_code == 429
    body = response.json()
    assert (body["error"], body["outcome"]) == ("attempts_exhausted", "attempts_exhausted")
    assert "attempt 4 is past the 3 attempts its route allows" in body["reason"]
    assert "Retry-After" not in response
    assert [(row["decision_id"], row["outcome"]) for row in audit(api)] == [(body["decision_id"], "attempts_exhausted")]


def test_an_escalated_task_may_use_the_headroom_above_soft_limits(api, counters, general, models):
    opus = models["claude-opus-4-5"]
    QuotaFactory(provider=opus.provider, name="opus-week", metric="requests", window="week", limit=10, soft_limit_ratio="0.1", models=[opus])
    route(api, category="general", attempt=3)  # one request: at the soft limit now

    answer = route(api, category="general", attempt=3)

    assert (answer["outcome"], answer["model"]["key"]) == ("escalated", "claude-opus-4-5")


def test_a_category_that_never_falls_back_escalates_within_its_escalation_list_only(api, counters, models, settings):
    settings.ROUTER_POLICY_RECHECK_SECONDS = 0  # see each edit at once
    CategoryFactory(slug="security_auth_change", fallback="never")
    chain = make_route("security_auth_change", [models["claude-sonnet-4-5"], models["claude-haiku-4-5"]])
    escalate(chain, [models["claude-opus-4-5"], models["claude-opus-4-1"]], after=1)
    disable(models["claude-opus-4-5"])

    answer = route(api, category="security_auth_change", attempt=2)
    assert (answer["outcome"], answer["model"]["key"]) == ("escalated", "claude-opus-4-1")

    disable(models["claude-opus-4-1"])
    refused = api.post("/api/v1/route", {"category": "security_auth_change", "attempt": 2}, format="json")
    assert refused.status_code == 503
    assert [entry["model"]["key"] for entry in refused.json()["trace"]] == ["claude-opus-4-5", "claude-opus-4-1"]


def escalations_counted(client) -> float:
    found = re.search(r'^switchboard_decisions_total\{outcome="escalated"\} ([\d.]+)$', client.get("/metrics").content.decode(), re.M)
    return float(found.group(1)) if found else 0.0


def test_the_metrics_count_escalations(api, counters, general, client):
    before = escalations_counted(client)

    route(api, category="general", attempt=3)

    assert escalations_counted(client) == before + 1


@pytest.mark.parametrize("attempt", [0, -1, 1001, "2", 1.5, True])
def test_an_attempt_that_is_not_a_whole_number_from_1_to_1000_is_refused(api, general, attempt):
    response = api.post("/api/v1/route", {"category": "general", "attempt": attempt}, format="json")

    assert response.status_code == 400
    assert "attempt" in response.json()["detail"]
    assert Decision.objects.count() == 0


def policy_with(**route_fields) -> dict:
    return {
        "version": 1,
        "providers": [{"slug": "anthropic", "kind": "anthropic"}],
        "models": [{"key": key, "provider": "anthropic", "model_id": key, "context_window": 200_000}
                   for key in ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5")],
        "tiers": [{"slug": "quality", "models": ["claude-sonnet-4-5"], "escalation": ["claude-opus-4-5"], "escalate_after": 1}],
        "categories": [{"slug": "general", "fallback": "allow"}],
        "routes": [{"category": "general", "complexity": "any", "models": ["claude-sonnet-4-5", "claude-haiku-4-5"], **route_fields}],
    }


def test_the_policy_file_round_trips_escalation(db):
    document = policy_with(escalation=["claude-opus-4-5"], escalate_after=2, max_attempts=3)

    assert apply_policy(document) is True

    exported = export_policy()
    assert exported["routes"][0] | {} == document["routes"][0]
    assert exported["tiers"] == document["tiers"]
    assert apply_policy(exported) is False


@pytest.mark.parametrize(("fields", "problem"), [
    ({"escalation": ["claude-opus-9"], "escalate_after": 2},
     "routes[0].escalation[0]: unknown model 'claude-opus-9' (did you mean 'claude-opus-4-5'?)"),
    ({"escalation": ["claude-sonnet-4-5", "claude-haiku-4-5"], "escalate_after": 2},
     "routes[0].escalation: repeats the route's models: escalate to other models, or leave it out"),
    ({"escalation": ["claude-opus-4-5"], "escalate_after": 3, "max_attempts": 2},
     "routes[0].max_attempts: must be at least escalate_after (3), got 2"),
    ({"escalation": ["claude-opus-4-5"]}, "routes[0].escalate_after: an escalation list needs escalate_after"),
    ({"escalate_after": 2}, "routes[0].escalation: escalate_after needs an escalation list"),
    ({"escalation": ["claude-opus-4-5"], "escalate_after": 0}, "routes[0].escalate_after: must be from 1 to 1000, got 0"),
    ({"max_attempts": -1}, "routes[0].max_attempts: must be from 1 to 1000, got -1"),
])
def test_a_bad_escalation_is_a_policy_error_with_its_place_and_changes_nothing(db, fields, problem):
    before = export_policy()

    with pytest.raises(PolicyError) as error:
        apply_policy(policy_with(**fields))

    assert error.value.problems == [problem]
    assert export_policy() == before


def test_the_what_if_takes_the_attempt(client, viewer, general):
    response = client.get("/what-if/", {"category": "general", "complexity": "medium", "estimated_input_tokens": 100,
                                        "estimated_output_tokens": 100, "attempt": 3})

    assert response.context["what_if"].decision.outcome == "escalated"
    assert "claude-opus-4-5" in response.content.decode()
