"""The users' own scenarios: seed 004's four "Example Scenarios" and seed 000's Bedrock Sonnet 4.5 limits."""

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.conf import settings

from router.counters import flush_ledger, redis_counters
from router.models import Category, Decision
from switchboard.vocabulary import ProviderKind
from tests.calls import post, report, route
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_route


def trace_of(body):
    return [(entry["model"]["key"], entry["verdict"], entry["cause"] or entry["reason"]) for entry in body["trace"]]


# Seed 004: weekly token caps (scaled down to 1,000 tokens), soft limit at 80% (90% for Zhipu).


@pytest.fixture
def seed_004(db):
    openai = ProviderFactory(slug="openai", kind=ProviderKind.OPENAI)
    anthropic = ProviderFactory(slug="anthropic", kind=ProviderKind.ANTHROPIC)
    zhipu = ProviderFactory(slug="zhipu", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://glm.example.invalid/api/paas/v4")
    models = {
        "gpt-4-turbo": LLMModelFactory(key="gpt-4-turbo", provider=openai, model_id="gpt-4-turbo-2024-04-09"),
        "gpt-4o": LLMModelFactory(key="gpt-4o", provider=openai, model_id="gpt-4o"),
        "gpt-4o-mini": LLMModelFactory(key="gpt-4o-mini", provider=openai, model_id="gpt-4o-mini"),
        "claude-3-5-sonnet": LLMModelFactory(key="claude-3-5-sonnet", provider=anthropic, model_id="claude-3-5-sonnet-20241022"),
        "claude-3-5-haiku": LLMModelFactory(key="claude-3-5-haiku", provider=anthropic, model_id="claude-3-5-haiku-20241022"),
        "glm-4-5": LLMModelFactory(key="glm-4-5", provider=zhipu, model_id="glm-4.5"),
    }
    QuotaFactory(provider=openai, name="weekly-tokens", metric="tokens", window="week", limit=Decimal(1000), soft_limit_ratio=Decimal("0.8"))
    # Anthropic's Sonnet pool is separate from the rest of the plan (seed 004): Haiku does not draw on it.
    QuotaFactory(provider=anthropic, name="sonnet-pool", metric="tokens", window="week", limit=Decimal(1000),
                 soft_limit_ratio=Decimal("0.8"), models=[models["claude-3-5-sonnet"]])
    QuotaFactory(provider=zhipu, name="daily-tokens", metric="tokens", window="day", limit=Decimal(1000), soft_limit_ratio=Decimal("0.9"))

    make_route(CategoryFactory(slug="general"), [models[k] for k in ("gpt-4o", "claude-3-5-sonnet", "glm-4-5", "gpt-4o-mini")],
               complexity="medium")
    make_route(CategoryFactory(slug="auxiliary_agents"),
               [models[k] for k in ("claude-3-5-sonnet", "claude-3-5-haiku", "glm-4-5", "gpt-4o-mini")])
    # The seed lists no fallbacks for security work; one is listed here to show that it is never tried.
    make_route(CategoryFactory(slug="security_auth_change", fallback=Category.Fallback.NEVER),
               [models["gpt-4-turbo"], models["glm-4-5"]])
    return models


def test_scenario_1_normal_operation_uses_the_primary(api, counters, seed_004):
    report(api, model="gpt-4o", input_tokens=300, output_tokens=0)  # OpenAI at 30%

    body = route(api, category="general", complexity="medium", estimated_input_tokens=50)

    assert (body["outcome"], body["model"]["key"]) == ("primary", "gpt-4o")
    assert trace_of(body) == [("gpt-4o", "chosen", "within limits")]


def test_scenario_2_an_aux_agent_falls_back_to_haiku_when_the_sonnet_pool_is_at_85_percent(api, counters, seed_004):
    report(api, model="claude-3-5-sonnet", input_tokens=850, output_tokens=0)

    body = route(api, category="auxiliary_agents", estimated_input_tokens=50)

    assert (body["outcome"], body["primary"]["key"], body["model"]["key"]) == ("fallback", "claude-3-5-sonnet", "claude-3-5-haiku")
    assert trace_of(body) == [("claude-3-5-sonnet", "skipped", "quota"), ("claude-3-5-haiku", "chosen", "within limits")]
    quota = body["trace"][0]["quotas"][0]
    assert (quota["quota"], quota["window"], quota["used"], quota["limit"]) == ("anthropic/sonnet-pool", "week", 850, 1000)
    flush_ledger()
    decision = Decision.objects.get(pk=body["decision_id"])
    assert (decision.outcome, decision.model_key, decision.primary_key) == ("fallback", "claude-3-5-haiku", "claude-3-5-sonnet")


def test_scenario_3_security_work_fails_fast_when_openai_is_at_95_percent(api, counters, seed_004):
    report(api, model="gpt-4-turbo", input_tokens=950, output_tokens=0)

    response = post(api, "/api/v1/route", category="security_auth_change", estimated_input_tokens=20)

    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    body = response.json()
    assert body["error"] == "quota_exceeded"
    assert body["outcome"] == "failed_fast"
    assert "security_auth_change" in body["reason"]
    assert trace_of(body) == [("gpt-4-turbo", "skipped", "quota")]
    flush_ledger()
    decision = Decision.objects.get(pk=body["decision_id"])
    assert (decision.outcome, decision.model_key) == ("failed_fast", "")
    assert not Decision.objects.filter(model_key="glm-4-5").exists()


def test_scenario_4_glm_takes_a_medium_task_when_openai_and_anthropic_are_near_their_limits(api, counters, seed_004):
    report(api, model="gpt-4o", input_tokens=900, output_tokens=0)  # OpenAI at 90%
    report(api, model="claude-3-5-sonnet", input_tokens=850, output_tokens=0)  # Anthropic at 85%
    report(api, model="glm-4-5", input_tokens=400, output_tokens=0)  # Zhipu at 40%

    body = route(api, category="general", complexity="medium", estimated_input_tokens=50)

    assert (body["outcome"], body["model"]["key"]) == ("fallback", "glm-4-5")
    assert trace_of(body) == [
        ("gpt-4o", "skipped", "quota"), ("claude-3-5-sonnet", "skipped", "quota"), ("glm-4-5", "chosen", "within limits"),
    ]
    assert [entry["quotas"][0]["quota"] for entry in body["trace"][:2]] == ["openai/weekly-tokens", "anthropic/sonnet-pool"]


# Seed 000: Bedrock's default quotas for Sonnet 4.5 are 4 requests and 4,000 tokens a minute.


@pytest.fixture
def seed_000(db):
    bedrock = ProviderFactory(slug="bedrock", kind=ProviderKind.BEDROCK, region="us-east-1")
    sonnet_4_5 = LLMModelFactory(key="bedrock-sonnet-4-5", provider=bedrock, model_id="anthropic.claude-sonnet-4-5-20250929-v1:0",
                                 invoke_id="us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    sonnet_3_7 = LLMModelFactory(key="bedrock-sonnet-3-7", provider=bedrock, model_id="anthropic.claude-3-7-sonnet-20250219-v1:0",
                                 invoke_id="us.anthropic.claude-3-7-sonnet-20250219-v1:0")
    for model, requests, tokens in ((sonnet_4_5, 4, 4000), (sonnet_3_7, 250, 1_000_000)):
        QuotaFactory(provider=bedrock, name=f"{model.key}-requests", metric="requests", window="minute", limit=Decimal(requests),
                     soft_limit_ratio=Decimal(1), models=[model])
        QuotaFactory(provider=bedrock, name=f"{model.key}-tokens", metric="tokens", window="minute", limit=Decimal(tokens),
                     soft_limit_ratio=Decimal(1), models=[model])
    make_route(CategoryFactory(slug="bedrock_agent"), [sonnet_4_5, sonnet_3_7])


def test_the_fifth_request_in_a_minute_falls_back_to_sonnet_3_7(api, counters, seed_000):
    answers = [route(api, category="bedrock_agent") for _ in range(5)]

    assert [a["model"]["key"] for a in answers] == ["bedrock-sonnet-4-5"] * 4 + ["bedrock-sonnet-3-7"]
    assert answers[0]["model"]["invoke_id"] == "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    last = answers[-1]
    assert last["outcome"] == "fallback"
    assert last["model"]["invoke_id"] == "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
    [quota] = last["trace"][0]["quotas"]
    assert (quota["quota"], quota["metric"], quota["window"], quota["used"], quota["limit"]) == (
        "bedrock/bedrock-sonnet-4-5-requests", "requests", "minute", 4, 4)


def test_estimates_fall_back_once_4000_tokens_a_minute_would_be_exceeded(api, counters, seed_000):
    estimate = {"estimated_input_tokens": 1500, "estimated_output_tokens": 500}

    keys = [route(api, category="bedrock_agent", **estimate)["model"]["key"] for _ in range(3)]

    assert keys == ["bedrock-sonnet-4-5", "bedrock-sonnet-4-5", "bedrock-sonnet-3-7"]
    body = route(api, category="bedrock_agent", **estimate)
    [quota] = body["trace"][0]["quotas"]
    assert (quota["quota"], quota["used"], quota["estimate"], quota["limit"]) == ("bedrock/bedrock-sonnet-4-5-tokens", 4000, 2000, 4000)


def test_a_large_estimate_is_routed_to_sonnet_3_7_straight_away(api, counters, seed_000):
    body = route(api, category="bedrock_agent", estimated_input_tokens=4001)

    assert body["model"]["key"] == "bedrock-sonnet-3-7"
    assert body["trace"][0]["cause"] == "quota"


def _decision_at(model_key: str, seconds_ago: float) -> None:
    Decision.objects.create(
        created_at=datetime.fromtimestamp(time.time() - seconds_ago, tz=UTC), outcome="primary", model_key=model_key,
        provider_slug="bedrock", primary_key=model_key, policy_version=1,
    )


def test_requests_older_than_a_minute_no_longer_count(api, counters, seed_000):
    for _ in range(4):
        _decision_at("bedrock-sonnet-4-5", seconds_ago=62)
    if settings.REDIS_URL:
        redis_counters().invalidate()

    assert route(api, category="bedrock_agent")["model"]["key"] == "bedrock-sonnet-4-5"


def test_requests_within_the_last_minute_still_count(api, counters, seed_000):
    for _ in range(4):
        _decision_at("bedrock-sonnet-4-5", seconds_ago=50)
    if settings.REDIS_URL:
        redis_counters().invalidate()

    assert route(api, category="bedrock_agent")["model"]["key"] == "bedrock-sonnet-3-7"
