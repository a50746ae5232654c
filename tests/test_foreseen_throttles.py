"""Against stand-ins that count like the providers (tests/standins), a service that routes, calls and reports
through Switchboard meets no throttle Switchboard admitted, and falls back no earlier than the provider needed,
but for the one call a conservative reservation may cost: calls that fill a window, cache-heavy prompts, a limiter
that never refunds, and a second model answering."""

import pytest

from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route
from tests.standins import AnthropicModel, AnthropicStandIn, BedrockModel, BedrockStandIn, OpenAIModel, OpenAIStandIn, filler_text
from tests.workloads import Service, Task, capacity

SONNET_4_5 = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU_3_5 = "us.anthropic.claude-3-5-haiku-20241022-v1:0"


def sent_to(calls, model: str) -> int:
    """How many calls went to `model` before the first that did not."""
    for index, call in enumerate(calls):
        if call.model != model:
            return index
    return len(calls)


def assert_foreseen(standin, calls, primary: str, provider_capacity: int) -> None:
    assert [call.status for call in calls if call.status != "ok"] == [], "the provider throttled calls Switchboard admitted"
    assert not standin.throttled()
    routed = sent_to(calls, primary)
    assert provider_capacity - 1 <= routed <= provider_capacity, (routed, provider_capacity)


@pytest.fixture
def bedrock_policy(db):
    bedrock = ProviderFactory(slug="bedrock", kind="bedrock", region="us-east-1")
    sonnet = LLMModelFactory(key="bedrock-sonnet-4-5", provider=bedrock, model_id=SONNET_4_5)
    haiku = LLMModelFactory(key="bedrock-haiku-3-5", provider=bedrock, model_id=HAIKU_3_5)
    QuotaFactory(provider=bedrock, metric="tokens", window="minute", limit=30_000, soft_limit_ratio=1, models=[sonnet])
    make_route("bedrock_agent", [sonnet, haiku])


def bedrock_standin():
    return BedrockStandIn({SONNET_4_5: BedrockModel(tokens_per_minute=30_000), HAIKU_3_5: BedrockModel()})


def test_bedrock_calls_that_fill_the_window_fall_back_before_the_burndown_throttles_them(api, counters, bedrock_policy):
    # The numbers: 1,500 input tokens, max_tokens 1,200, 600 written; AWS holds 1,500 + 5 x 600 of each.
    tasks = [Task(prompt=filler_text(1_500), max_tokens=1_200, output_tokens=600) for _ in range(24)]
    with bedrock_standin() as standin, bedrock_standin() as direct:
        calls = [Service(api, bedrock_standin=standin).run("bedrock_agent", task) for task in tasks]
        provider_capacity = capacity(Service(api, bedrock_standin=direct), "bedrock", SONNET_4_5, tasks)

    assert provider_capacity == 7
    assert_foreseen(standin, calls, "bedrock-sonnet-4-5", provider_capacity)
    assert {call.model for call in calls[7:]} == {"bedrock-haiku-3-5"}


@pytest.fixture
def anthropic_policy(db):
    anthropic = ProviderFactory(slug="anthropic", kind="anthropic")
    sonnet = LLMModelFactory(key="claude-sonnet-4-5", provider=anthropic, model_id="claude-sonnet-4-5")
    haiku = LLMModelFactory(key="claude-haiku-4-5", provider=anthropic, model_id="claude-haiku-4-5")
    opus = LLMModelFactory(key="claude-opus-4-5", provider=anthropic, model_id="claude-opus-4-5")
    for metric, limit in (("input_tokens", 20_000), ("output_tokens", 4_000), ("requests", 50)):
        QuotaFactory(provider=anthropic, name=f"sonnet-{metric}", metric=metric, window="minute", limit=limit, soft_limit_ratio=1,
                     models=[sonnet])
    make_route("general", [sonnet, haiku])
    make_route("security_auth_change", [opus])


def anthropic_standin():
    return AnthropicStandIn({"claude-sonnet-4-5": AnthropicModel(requests_per_minute=50, input_tokens_per_minute=20_000,
                                                                 output_tokens_per_minute=4_000),
                             "claude-haiku-4-5": AnthropicModel(), "claude-opus-4-5": AnthropicModel()})


def test_anthropic_input_and_output_limits_are_foreseen(api, counters, anthropic_policy):
    tasks = [Task(prompt=filler_text(2_000), max_tokens=1_000, output_tokens=300) for _ in range(16)]
    with anthropic_standin() as standin, anthropic_standin() as direct:
        calls = [Service(api, anthropic_standin=standin).run("general", task) for task in tasks]
        provider_capacity = capacity(Service(api, anthropic_standin=direct), "anthropic", "claude-sonnet-4-5", tasks)

    assert_foreseen(standin, calls, "claude-sonnet-4-5", provider_capacity)


def test_cache_heavy_prompts_are_not_counted_against_anthropics_input_limit(api, counters, anthropic_policy):
    prefix = filler_text(11_000)
    tasks = [Task(prompt=filler_text(200), cached_prefix=prefix, max_tokens=100, output_tokens=20, expect_cache_read=index > 0)
             for index in range(40)]
    with anthropic_standin() as standin:
        calls = [Service(api, anthropic_standin=standin).run("general", task) for task in tasks]

    # 11,200 once, then 200 a call: 19,000 of 20,000. The stand-in, as Anthropic, rounds the input tokens remaining
    # to the nearest thousand: a workload ending nearer the limit is refused by the provider's own headers.
    assert [call.model for call in calls] == ["claude-sonnet-4-5"] * 40
    assert not standin.throttled()


def test_a_model_that_answered_instead_counts_where_the_provider_counted_it(api, counters, anthropic_policy):
    tasks = [Task(prompt=filler_text(4_000), max_tokens=200, output_tokens=50) for _ in range(8)]
    with anthropic_standin() as standin:
        standin.answer_with("claude-opus-4-5", "claude-sonnet-4-5")
        service = Service(api, anthropic_standin=standin, keys={"claude-sonnet-4-5": "claude-sonnet-4-5"})
        answered = [service.run("security_auth_change", task) for task in tasks[:4]]  # 16,000 input tokens on Sonnet's limit
        calls = [service.run("general", task) for task in tasks[4:]]

    assert [call.model for call in answered] == ["claude-opus-4-5"] * 4
    assert [call.model for call in calls] == ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-haiku-4-5", "claude-haiku-4-5"]
    assert not standin.throttled()


@pytest.fixture
def openai_policy(db):
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt = LLMModelFactory(key="gpt-4o", provider=openai, model_id="gpt-4o")
    mini = LLMModelFactory(key="gpt-4o-mini", provider=openai, model_id="gpt-4o-mini")
    QuotaFactory(provider=openai, metric="tokens", window="minute", limit=20_000, soft_limit_ratio=1, models=[gpt])
    make_route("general", [gpt, mini])


def openai_standin():
    return OpenAIStandIn({"gpt-4o": OpenAIModel(tokens_per_minute=20_000), "gpt-4o-mini": OpenAIModel()})


def test_openais_max_tokens_charge_that_is_never_refunded_is_foreseen(api, counters, openai_policy):
    tasks = [Task(prompt=filler_text(1_000), max_tokens=3_000, output_tokens=200) for _ in range(10)]
    with openai_standin() as standin, openai_standin() as direct:
        calls = [Service(api, openai_standin=standin).run("general", task) for task in tasks]
        provider_capacity = capacity(Service(api, openai_standin=direct), "openai", "gpt-4o", tasks)

    assert provider_capacity == 6
    assert_foreseen(standin, calls, "gpt-4o", provider_capacity)
