"""POST /api/v1/route: choosing candidates, the reasons a candidate is passed over, refusals."""

from decimal import Decimal

import pytest

from providers.models import LLMModel, Provider
from router.counters import flush_ledger
from router.models import Category, Decision, Policy
from router.shapes import api_trace, as_json
from switchboard.vocabulary import ProviderKind
from tests.calls import post, quotas_used, report, route, stored_decisions
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_route, make_tier


@pytest.fixture
def openai(db):
    return ProviderFactory(slug="openai", kind=ProviderKind.OPENAI)


@pytest.fixture
def gpt4o(openai):
    return LLMModelFactory(key="gpt-4o", provider=openai, model_id="gpt-4o-2024-08-06")


@pytest.fixture
def mini(openai):
    return LLMModelFactory(key="gpt-4o-mini", provider=openai, model_id="gpt-4o-mini-2024-07-18")


@pytest.fixture
def glm(db):
    zhipu = ProviderFactory(slug="zhipu", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://open.bigmodel.cn/api/paas/v4")
    return LLMModelFactory(key="glm-4-5", provider=zhipu, model_id="glm-4.5")


# Choosing the candidates


def test_it_prefers_the_route_for_the_exact_complexity_over_any(api, gpt4o, mini):
    general = CategoryFactory(slug="general")
    make_route(general, [mini], complexity="any")
    make_route(general, [gpt4o], complexity="high")

    assert route(api, category="general", complexity="high")["model"]["key"] == "gpt-4o"
    assert route(api, category="general", complexity="low")["model"]["key"] == "gpt-4o-mini"


def test_it_defaults_the_complexity_to_medium(api, gpt4o, mini):
    general = CategoryFactory(slug="general")
    make_route(general, [mini], complexity="any")
    make_route(general, [gpt4o], complexity="medium")

    body = route(api, category="general")

    assert body["model"]["key"] == "gpt-4o"
    flush_ledger()
    assert Decision.objects.get().complexity == "medium"


def test_it_routes_a_named_tier(api, gpt4o, mini):
    make_tier("cheap", [mini, gpt4o])

    body = route(api, tier="cheap")

    assert body["model"]["key"] == "gpt-4o-mini"
    flush_ledger()
    assert Decision.objects.get().tier == "cheap"


def test_it_uses_the_default_tier_when_neither_category_nor_tier_is_named(api, gpt4o, mini):
    make_tier("cheap", [mini])
    policy = Policy.current()
    policy.default_tier = make_tier("quality", [gpt4o])
    policy.save()

    body = route(api)

    assert body["model"]["key"] == "gpt-4o"
    flush_ledger()
    assert Decision.objects.get().tier == "quality"


def test_it_answers_400_naming_the_valid_categories_for_an_unknown_category(api, gpt4o):
    make_route("general", [gpt4o])
    make_route("security_auth_change", [gpt4o])

    body = route(api, expect=400, category="genral")

    assert (body["error"], body["cause"]) == ("unroutable", "unknown_category")
    assert "general" in body["detail"] and "security_auth_change" in body["detail"]
    assert body["valid"] == ["general", "security_auth_change"]
    assert stored_decisions().get().outcome == "unroutable"


def test_it_answers_400_naming_the_valid_tiers_for_an_unknown_tier(api, gpt4o, mini):
    make_tier("cheap", [mini])
    make_tier("quality", [gpt4o])

    body = route(api, expect=400, tier="cheapest")

    assert (body["error"], body["cause"]) == ("unroutable", "unknown_tier")
    assert "cheap" in body["detail"] and "quality" in body["detail"]
    assert body["valid"] == ["cheap", "quality"]


def test_it_answers_400_naming_the_valid_complexities_for_an_unknown_complexity(api, gpt4o):
    make_route("general", [gpt4o])

    body = route(api, expect=400, category="general", complexity="extreme")

    assert body["error"] == "unknown_complexity"
    assert all(name in body["detail"] for name in ("low", "medium", "high"))
    assert body["valid"] == ["low", "medium", "high"]


def test_it_answers_400_naming_the_routes_of_a_category_without_one_for_the_complexity(api, gpt4o):
    make_route("general", [gpt4o], complexity="low")

    body = route(api, expect=400, category="general", complexity="high")

    assert (body["error"], body["cause"]) == ("unroutable", "no_route")
    assert body["valid"] == ["low"]


def test_it_answers_400_when_a_request_names_both_a_category_and_a_tier(api, gpt4o):
    make_route("general", [gpt4o])
    make_tier("cheap", [gpt4o])

    body = route(api, expect=400, category="general", tier="cheap")

    assert body["error"] == "invalid_request"
    assert "either a category or a tier" in body["detail"]


def test_it_answers_400_when_there_is_no_default_tier_and_nothing_is_named(api, gpt4o):
    make_route("general", [gpt4o])

    body = route(api, expect=400)

    assert (body["error"], body["cause"]) == ("unroutable", "no_default_tier")
    assert body["valid"] == ["general"]


def test_a_tier_without_models_is_answered_with_400_not_a_crash(api, gpt4o):
    make_tier("empty", [])
    make_tier("quality", [gpt4o])

    body = route(api, expect=400, tier="empty")

    assert (body["error"], body["cause"]) == ("unroutable", "no_route")
    assert body["valid"] == ["quality"]


def test_an_empty_default_tier_is_answered_with_400_not_a_crash(api, gpt4o):
    policy = Policy.current()
    policy.default_tier = make_tier("empty", [])
    policy.save()

    body = route(api, expect=400)

    assert (body["error"], body["cause"]) == ("unroutable", "no_route")


# The answer


def test_it_answers_with_the_chosen_model_and_the_trace(api, gpt4o):
    make_route("general", [gpt4o])

    body = route(api, category="general", estimated_input_tokens=1200, estimated_output_tokens=800)

    flush_ledger()
    decision = Decision.objects.get()
    assert body["decision_id"] == str(decision.id)
    assert body["outcome"] == "primary"
    assert body["reason"]
    assert body["model"] == {"key": "gpt-4o", "provider": "openai", "kind": "openai", "base_url": None,
                             "model_id": "gpt-4o-2024-08-06", "invoke_id": "gpt-4o-2024-08-06", "region": None}
    assert body["primary"] == {"key": "gpt-4o", "provider": "openai"}
    assert body["trace"] == [{"model": {"key": "gpt-4o", "provider": "openai"}, "verdict": "chosen", "cause": None,
                              "reason": "within limits", "until": None, "quotas": []}]
    assert body["policy_version"] == Policy.current().version
    assert decision.outcome == "primary"
    assert decision.model_key == "gpt-4o"
    assert decision.caller == "test-service"
    assert (decision.input_tokens, decision.output_tokens) == (1200, 800)


def test_it_answers_the_invoke_id_and_region_of_a_bedrock_model(api):
    bedrock = ProviderFactory(slug="bedrock-us", kind=ProviderKind.BEDROCK, region="us-east-1")
    sonnet = LLMModelFactory(key="bedrock-sonnet-4-5", provider=bedrock, model_id="anthropic.claude-sonnet-4-5-20250929-v1:0",
                             invoke_id="us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    make_route("general", [sonnet])

    model = route(api, category="general")["model"]

    assert model["model_id"] == "anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert model["invoke_id"] == "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert model["region"] == "us-east-1"


def test_it_falls_back_to_the_next_candidate_and_says_why(api, gpt4o, glm):
    gpt4o.enabled = False
    gpt4o.save()
    make_route("general", [gpt4o, glm])

    body = route(api, category="general")

    assert body["outcome"] == "fallback"
    assert body["model"]["key"] == "glm-4-5"
    assert body["primary"]["key"] == "gpt-4o"
    assert "gpt-4o: disabled" in body["reason"]
    assert [(e["model"]["key"], e["verdict"]) for e in body["trace"]] == [("gpt-4o", "skipped"), ("glm-4-5", "chosen")]
    flush_ledger()
    decision = Decision.objects.get()
    assert (decision.outcome, decision.model_key, decision.provider_slug, decision.primary_key) == ("fallback", "glm-4-5", "zhipu", "gpt-4o")


# Why a candidate is passed over


def skipped(body):
    return {entry["model"]["key"]: entry["cause"] for entry in body["trace"] if entry["verdict"] == "skipped"}


def test_it_passes_over_a_disabled_model(api, gpt4o, glm):
    gpt4o.enabled = False
    gpt4o.save()
    make_route("general", [gpt4o, glm])

    assert skipped(route(api, category="general")) == {"gpt-4o": "disabled"}


def test_it_passes_over_the_models_of_a_disabled_provider(api, gpt4o, mini, glm):
    Provider.objects.filter(slug="openai").update(enabled=False)
    make_route("general", [gpt4o, mini, glm])

    body = route(api, category="general")

    assert skipped(body) == {"gpt-4o": "disabled", "gpt-4o-mini": "disabled"}
    assert body["model"]["key"] == "glm-4-5"


def test_it_passes_over_a_model_the_last_check_found_unavailable(api, gpt4o, glm):
    LLMModel.objects.filter(pk=gpt4o.pk).update(availability="unavailable", availability_reason="not in models.list()")
    make_route("general", [gpt4o, glm])

    body = route(api, category="general")

    assert skipped(body) == {"gpt-4o": "unavailable"}
    assert body["trace"][0]["reason"] == "not in models.list()"


def test_it_does_not_pass_over_a_model_whose_availability_is_unknown(api, gpt4o, glm):
    LLMModel.objects.filter(pk=gpt4o.pk).update(availability="unknown", availability_reason="list call timed out")
    make_route("general", [gpt4o, glm])

    body = route(api, category="general")

    assert body["outcome"] == "primary"
    assert body["model"]["key"] == "gpt-4o"


def test_it_passes_over_a_model_cooling_down_after_failures(api, counters, gpt4o, glm):
    make_route("general", [gpt4o, glm])
    for _ in range(3):
        report(api, model=gpt4o.key, input_tokens=0, output_tokens=0, status="error")

    body = route(api, category="general")

    assert skipped(body) == {"gpt-4o": "cooldown"}
    assert body["model"]["key"] == "glm-4-5"


def test_it_passes_over_a_model_whose_context_window_is_too_small(api, gpt4o, glm):
    LLMModel.objects.filter(pk=gpt4o.pk).update(context_window=8000)
    make_route("general", [gpt4o, glm])

    body = route(api, category="general", estimated_input_tokens=6000, estimated_output_tokens=2001)

    assert skipped(body) == {"gpt-4o": "context_window"}
    assert "8000" in body["trace"][0]["reason"]


def test_it_keeps_a_model_whose_context_window_just_holds_the_estimate(api, gpt4o, glm):
    LLMModel.objects.filter(pk=gpt4o.pk).update(context_window=8000)
    make_route("general", [gpt4o, glm])

    body = route(api, category="general", estimated_input_tokens=6000, estimated_output_tokens=2000)

    assert body["model"]["key"] == "gpt-4o"


def test_it_passes_over_a_model_whose_quota_is_at_its_soft_limit_and_names_the_quota(api, counters, openai, gpt4o, glm):
    QuotaFactory(provider=openai, name="weekly-tokens", metric="tokens", window="week", limit=Decimal(1000), soft_limit_ratio=Decimal("0.8"))
    make_route("general", [gpt4o, glm])
    report(api, model=gpt4o.key, input_tokens=700, output_tokens=100)

    body = route(api, category="general")

    assert skipped(body) == {"gpt-4o": "quota"}
    [quota] = body["trace"][0]["quotas"]
    assert quota["quota"] == "openai/weekly-tokens"
    assert (quota["window"], quota["used"], quota["limit"], quota["soft_limit"]) == ("week", 800, 1000, 800)
    assert "openai/weekly-tokens" in body["trace"][0]["reason"]


def test_it_passes_over_a_model_when_the_estimate_would_exceed_the_hard_limit(api, counters, openai, gpt4o, glm):
    QuotaFactory(provider=openai, name="daily-tokens", metric="tokens", window="day", limit=Decimal(1000))
    make_route("general", [gpt4o, glm])
    report(api, model=gpt4o.key, input_tokens=100, output_tokens=0)

    body = route(api, category="general", estimated_input_tokens=901)

    assert skipped(body) == {"gpt-4o": "quota"}
    assert body["trace"][0]["quotas"][0]["estimate"] == 901
    assert route(api, category="general", estimated_input_tokens=600)["model"]["key"] == "gpt-4o"


def test_the_soft_limit_is_not_rounded_down(api, counters, openai, gpt4o, glm):
    QuotaFactory(provider=openai, name="rpm", metric="requests", window="minute", limit=Decimal(4), soft_limit_ratio=Decimal("0.8"))
    make_route("general", [gpt4o, glm])

    keys = [route(api, category="general")["model"]["key"] for _ in range(5)]

    assert keys == ["gpt-4o"] * 4 + ["glm-4-5"]


def test_it_only_counts_a_pool_quota_against_the_models_it_names(api, counters, openai, gpt4o, mini):
    QuotaFactory(provider=openai, name="gpt-4o-pool", metric="requests", window="minute", limit=Decimal(1),
                 soft_limit_ratio=Decimal(1), models=[gpt4o])
    make_route("general", [gpt4o, mini])

    outcomes = [route(api, category="general")["model"]["key"] for _ in range(3)]

    assert outcomes == ["gpt-4o", "gpt-4o-mini", "gpt-4o-mini"]


# Dry runs and policy versions


def test_a_dry_run_stores_nothing_and_counts_nothing(api, counters, openai, gpt4o):
    quota = QuotaFactory(provider=openai, name="daily-requests", metric="requests", window="day", limit=Decimal(100))
    make_route("general", [gpt4o])

    body = route(api, category="general", estimated_input_tokens=500, dry_run=True)

    assert body["decision_id"] is None
    assert body["model"]["key"] == "gpt-4o"
    assert not stored_decisions().exists()
    assert quotas_used(api)[quota.name] == 0


def test_a_counted_decision_takes_one_request_and_its_estimate_from_every_covering_quota(api, counters, openai, gpt4o):
    requests = QuotaFactory(provider=openai, name="daily-requests", metric="requests", window="day", limit=Decimal(100))
    tokens = QuotaFactory(provider=openai, name="daily-tokens", metric="tokens", window="day", limit=Decimal(100_000))
    make_route("general", [gpt4o])

    route(api, category="general", estimated_input_tokens=500, estimated_output_tokens=250)

    assert quotas_used(api)[requests.name] == 1
    assert quotas_used(api)[tokens.name] == 750


def test_the_answer_carries_the_new_policy_version_after_a_policy_edit(api, settings, gpt4o, mini):
    settings.ROUTER_POLICY_RECHECK_SECONDS = 0
    make_route("general", [gpt4o, mini])
    before = route(api, category="general")["policy_version"]

    gpt4o.enabled = False
    gpt4o.save()
    after = route(api, category="general")

    assert after["policy_version"] > before
    assert after["policy_version"] == Policy.current().version
    assert after["model"]["key"] == "gpt-4o-mini"
    flush_ledger()
    assert Decision.objects.order_by("created_at").last().policy_version == after["policy_version"]


# Never downgrade, headroom and refusals


@pytest.fixture
def security(gpt4o, glm):
    category = CategoryFactory(slug="security_auth_change", fallback=Category.Fallback.NEVER)
    make_route(category, [gpt4o, glm])
    return category


def test_a_never_fallback_category_without_headroom_is_refused_above_the_soft_limit(api, counters, openai, security, gpt4o):
    QuotaFactory(provider=openai, name="weekly-tokens", metric="tokens", window="week", limit=Decimal(1000))
    report(api, model=gpt4o.key, input_tokens=850, output_tokens=0)

    response = post(api, "/api/v1/route", category="security_auth_change")

    assert response.status_code == 429
    body = response.json()
    assert body["error"] == "quota_exceeded"
    assert body["outcome"] == "failed_fast"
    assert [entry["model"]["key"] for entry in body["trace"]] == ["gpt-4o"]
    assert int(response["Retry-After"]) > 0


def test_a_never_fallback_category_with_headroom_keeps_its_primary_between_the_soft_and_hard_limit(api, counters, openai, security, gpt4o):
    Category.objects.filter(pk=security.pk).update(may_use_headroom=True)
    QuotaFactory(provider=openai, name="weekly-tokens", metric="tokens", window="week", limit=Decimal(1000))
    report(api, model=gpt4o.key, input_tokens=850, output_tokens=0)

    body = route(api, category="security_auth_change", estimated_input_tokens=100)

    assert body["outcome"] == "primary"
    assert body["model"]["key"] == "gpt-4o"


def test_headroom_stops_at_the_hard_limit(api, counters, openai, security, gpt4o):
    Category.objects.filter(pk=security.pk).update(may_use_headroom=True)
    QuotaFactory(provider=openai, name="weekly-tokens", metric="tokens", window="week", limit=Decimal(1000))
    report(api, model=gpt4o.key, input_tokens=950, output_tokens=0)

    body = route(api, expect=429, category="security_auth_change", estimated_input_tokens=51)

    assert body["error"] == "quota_exceeded"


def test_a_never_fallback_category_whose_primary_is_unavailable_is_refused_with_503(api, security, gpt4o):
    LLMModel.objects.filter(pk=gpt4o.pk).update(availability="unavailable")

    response = post(api, "/api/v1/route", category="security_auth_change")

    assert response.status_code == 503
    assert response.json()["error"] == "primary_unavailable"
    assert response.json()["outcome"] == "failed_fast"
    assert "Retry-After" not in response
    assert len(response.json()["trace"]) == 1


def test_it_answers_429_no_capacity_when_every_candidate_is_over_a_quota(api, counters, openai, gpt4o, glm):
    QuotaFactory(provider=openai, name="minute-requests", metric="requests", window="minute", limit=Decimal(1), soft_limit_ratio=Decimal(1))
    LLMModel.objects.filter(pk=glm.pk).update(enabled=False)
    make_route("general", [gpt4o, glm])
    route(api, category="general")

    response = post(api, "/api/v1/route", category="general")

    assert response.status_code == 429
    body = response.json()
    assert body["error"] == "no_capacity"
    assert body["outcome"] == "exhausted"
    assert skipped(body) == {"gpt-4o": "quota", "glm-4-5": "disabled"}
    assert 1 <= int(response["Retry-After"]) <= 61


def test_it_answers_503_without_retry_after_when_no_quota_was_among_the_reasons(api, gpt4o, glm):
    LLMModel.objects.filter(pk__in=[gpt4o.pk, glm.pk]).update(availability="unavailable")
    make_route("general", [gpt4o, glm])

    response = post(api, "/api/v1/route", category="general")

    assert response.status_code == 503
    assert response.json()["error"] == "no_capacity"
    assert "Retry-After" not in response
    assert skipped(response.json()) == {"gpt-4o": "unavailable", "glm-4-5": "unavailable"}


def test_a_refusal_is_stored_with_its_trace_caller_and_policy_version(api, counters, openai, security, gpt4o):
    QuotaFactory(provider=openai, name="weekly-tokens", metric="tokens", window="week", limit=Decimal(1000))
    report(api, model=gpt4o.key, input_tokens=950, output_tokens=0)

    body = route(api, expect=429, category="security_auth_change")

    flush_ledger()
    decision = Decision.objects.get(pk=body["decision_id"])
    assert decision.outcome == "failed_fast"
    assert decision.model_key == ""
    assert decision.caller == "test-service"
    assert decision.category == "security_auth_change"
    assert decision.primary_key == "gpt-4o"
    assert as_json(api_trace(decision.trace)) == body["trace"]
    assert decision.policy_version == body["policy_version"] == Policy.current().version
    assert decision.reason == body["reason"]
