"""messages(), chat_completions() and converse(), sync and async: route, call with the official SDK, report."""

from __future__ import annotations

import asyncio

import anthropic
import boto3
import openai
import pytest
from botocore.config import Config
from conftest import HAIKU, NOVA, ROUTER, SONNET, recorded
from switchboard_client import AsyncSwitchboard, Switchboard

HELLO = [{"role": "user", "content": "Say hello. [[output_tokens=12]]"}]


def key_of(request):
    return request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")


def last_call(standin, model):
    calls = standin.calls_for(model)
    assert calls, f"no call to {model}"
    return calls[-1]


def test_messages(sb, admin, standins):
    reply = sb.messages(category="messages", system="Be brief.", messages=HELLO, max_tokens=100)
    assert isinstance(reply, anthropic.types.Message)
    assert reply.usage.output_tokens == 12
    decision = reply.switchboard_decision
    assert decision.model.key == "claude-a"
    call = last_call(standins["anthropic"], "claude-a")
    assert call.max_tokens == 100
    request = standins["anthropic"].requests[-1]
    assert key_of(request) == "sk-ant-test"  # the service's own ANTHROPIC_API_KEY
    row = recorded(admin, "messages", decision.id)
    assert row["reported"] and (row["input_tokens"], row["output_tokens"]) == (call.input_tokens, 12)
    report = reply.switchboard_report
    assert report["status"] == "ok"
    assert report["ratelimit_headers"]["anthropic-ratelimit-requests-limit"] == "100000"


def test_messages_estimates_input_from_the_text(switchboard, standins):
    seen = []

    class Recording(Switchboard):
        def route(self, *args, **kwargs):
            seen.append(kwargs)
            return super().route(*args, **kwargs)

    with Recording(switchboard["url"], switchboard["key"]) as sb:
        sb.messages(category="messages", system="x" * 400, messages=[{"role": "user", "content": "y" * 800}], max_tokens=64)
        sb.messages(category="messages", messages=HELLO, max_tokens=64, estimated_input_tokens=999)
    assert (seen[0]["estimated_input_tokens"], seen[0]["estimated_output_tokens"]) == (300, 64)
    assert seen[1]["estimated_input_tokens"] == 999


def test_chat_completions_openai_and_compatible(sb, admin, standins):
    completion = sb.chat_completions(category="chat", messages=HELLO, max_tokens=50)
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert completion.switchboard_decision.model.key == "gpt-a"
    assert completion.switchboard_report["ratelimit_headers"]["x-ratelimit-limit-tokens"] == "100000000"
    row = recorded(admin, "chat", completion.switchboard_decision.id)
    assert (row["input_tokens"], row["output_tokens"]) == (completion.usage.prompt_tokens, 12)

    compatible = sb.chat_completions(category="compat", messages=HELLO, max_completion_tokens=40)
    assert compatible.switchboard_decision.model.kind == "openai_compatible"
    request = standins["openai"].requests[-1]
    assert request.body["model"] == "glm-a" and request.body["max_completion_tokens"] == 40
    assert request.headers["authorization"] == "Bearer glm-test"  # <PROVIDER>_API_KEY of the service's environment


def test_converse(sb, admin, standins):
    response = sb.converse(category="converse", messages=[{"role": "user", "content": [{"text": "hi [[output_tokens=9]]"}]}],
                           system=[{"text": "Be brief."}], inferenceConfig={"maxTokens": 30})
    assert response["output"]["message"]["content"][0]["text"]
    decision = response["switchboard_decision"]
    assert decision.model.key == "nova-pro"
    assert last_call(standins["bedrock"], NOVA).max_tokens == 30
    row = recorded(admin, "converse", decision.id)
    assert row["reported"] and row["output_tokens"] == 9 and row["input_tokens"] == response["usage"]["inputTokens"]


def test_messages_on_a_bedrock_claude_go_through_converse(sb, admin, standins):
    reply = sb.messages(category="bedrock_claude", system="Be brief.", messages=HELLO, max_tokens=80, temperature=0.2)
    assert isinstance(reply, anthropic.types.Message)
    assert reply.content[0].type == "text" and reply.usage.output_tokens == 12
    assert reply.model == SONNET
    call = last_call(standins["bedrock"], SONNET)
    assert call.max_tokens == 80
    body = standins["bedrock"].requests[-1].body
    assert body["system"] == [{"text": "Be brief."}] and body["inferenceConfig"] == {"maxTokens": 80, "temperature": 0.2}
    row = recorded(admin, "bedrock_claude", reply.switchboard_decision.id)
    assert (row["input_tokens"], row["output_tokens"]) == (call.input_tokens, 12)


def test_a_bedrock_model_outside_the_anthropic_family_is_released_and_routed_past_by_messages(sb, admin, standins):
    before = len(standins["openai"].calls_for("gpt-a")), len(standins["bedrock"].calls_for(NOVA))
    reply = sb.messages(category="mixed", messages=HELLO, max_tokens=50)
    assert (len(standins["openai"].calls_for("gpt-a")), len(standins["bedrock"].calls_for(NOVA))) == before
    assert reply.switchboard_decision.model.key == "claude-c"
    rows = recorded_all(admin, "mixed")
    # gpt-a is passed over by Switchboard (`apis`); Nova speaks Bedrock, which messages() calls only for Claude models.
    assert [row["model"]["key"] for row in rows[-2:]] == ["nova-pro", "claude-c"]
    assert rows[-2]["reported"] and rows[-2]["input_tokens"] == 0  # released, nothing counted


def recorded_all(admin, category):
    from conftest import decisions

    return decisions(admin, category)


def test_cache_tokens_are_reported_as_the_provider_counts_them(sb, admin):
    system = [{"type": "text", "text": "rule " * 1400, "cache_control": {"type": "ephemeral"}}]
    first = sb.messages(category="cache", system=system, messages=HELLO, max_tokens=50)
    second = sb.messages(category="cache", system=system, messages=HELLO, max_tokens=50)
    assert first.usage.cache_creation_input_tokens > 1024 and second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    row = recorded(admin, "cache", first.switchboard_decision.id)
    assert row["cache_write_input_tokens"] == first.usage.cache_creation_input_tokens
    row = recorded(admin, "cache", second.switchboard_decision.id)
    assert (row["input_tokens"], row["cache_read_input_tokens"]) == (second.usage.input_tokens, second.usage.cache_read_input_tokens)

    prompt = [{"role": "system", "content": "rule " * 1400}, {"role": "user", "content": "hi"}]
    sb.chat_completions(category="chat_cache", messages=prompt, max_tokens=20)
    cached = sb.chat_completions(category="chat_cache", messages=prompt, max_tokens=20)
    details = cached.usage.prompt_tokens_details.cached_tokens
    assert details >= 1024
    row = recorded(admin, "chat_cache", cached.switchboard_decision.id)
    assert (row["input_tokens"], row["cache_read_input_tokens"]) == (cached.usage.prompt_tokens - details, details)


def test_sdk_clients_handed_in(switchboard, standins, admin):
    anthropic_standin = standins["anthropic"]
    anthropic_standin.api_key = "handed-in-key"  # the environment's key no longer works
    try:
        with Switchboard(switchboard["url"], switchboard["key"]) as plain, pytest.raises(anthropic.AuthenticationError):
            plain.messages(category="handed", messages=HELLO, max_tokens=20)
        handed = anthropic.Anthropic(api_key="handed-in-key", base_url="http://127.0.0.1:9", max_retries=5)
        compatible = openai.OpenAI(api_key="glm-handed", base_url="http://127.0.0.1:9/v1")
        bedrock = boto3.client("bedrock-runtime", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1}))
        clients = {"anthropic": handed, "openai_compatible": compatible, "bedrock": bedrock}
        with Switchboard(switchboard["url"], switchboard["key"], clients=clients) as sb:
            reply = sb.messages(category="handed", messages=HELLO, max_tokens=20)
            assert reply.usage.output_tokens == 12
            assert key_of(standins["anthropic"].requests[-1]) == "handed-in-key"
            sb.chat_completions(category="compat", messages=HELLO, max_tokens=20)
            assert standins["openai"].requests[-1].headers["authorization"] == "Bearer glm-handed"
            sb.converse(category="converse", messages=[{"role": "user", "content": [{"text": "hi"}]}], inferenceConfig={"maxTokens": 10})
        assert handed.max_retries == 5  # the caller's client is not changed: a copy without retries is used
        # The caller's error (401) released the first decision without blaming the model.
        rows = recorded_all(admin, "handed")
        assert rows[0]["reported"] and rows[0]["input_tokens"] == 0
    finally:
        anthropic_standin.api_key = None


def test_another_model_answering_is_reported_with_its_key(sb, admin, standins):
    reply = sb.messages(category="snapshot", messages=HELLO, max_tokens=40)
    assert reply.model == "claude-other"
    assert reply.switchboard_report["model"]["key"] == "claude-other" and reply.switchboard_report["answered_instead"]
    assert recorded(admin, "snapshot", reply.switchboard_decision.id)["answered_by"]["key"] == "claude-other"

    # A dated snapshot of an alias maps to no key: the decision's model answered.
    completion = sb.chat_completions(category="alias", messages=HELLO, max_tokens=40)
    assert completion.model == "gpt-alias-2024-08-06"
    assert completion.switchboard_report["model"]["key"] == "gpt-alias" and not completion.switchboard_report["answered_instead"]

    response = sb.converse(category="prompt_router", messages=[{"role": "user", "content": [{"text": "hi"}]}], inferenceConfig={"maxTokens": 10})
    assert response["trace"]["promptRouter"]["invokedModelId"] == HAIKU
    assert response["switchboard_report"]["model"]["key"] == "bedrock-haiku"
    assert last_call(standins["bedrock"], ROUTER).answered_by == HAIKU


def test_a_provider_400_is_the_callers_error(sb, admin, standins):
    standins["anthropic"].fail("claude-400", 400)
    try:
        with pytest.raises(anthropic.BadRequestError):
            sb.messages(category="bad_request", messages=HELLO, max_tokens=20)
    finally:
        standins["anthropic"].fail("claude-400", None)
    rows = recorded_all(admin, "bad_request")
    assert len(rows) == 1  # not retried on another model
    assert rows[0]["reported"] and (rows[0]["input_tokens"], rows[0]["output_tokens"]) == (0, 0)
    # ... and no cooldown: the model is chosen again.
    assert sb.route("bad_request", dry_run=True).model.key == "claude-400"


def test_bedrock_converse_parameters_the_caller_gets_wrong_raise_before_the_call(sb):
    with pytest.raises(TypeError, match="cannot send to Bedrock Converse: frobnicate"):
        sb.messages(category="bedrock_claude", messages=HELLO, max_tokens=10, frobnicate=True)


def test_async_helpers(switchboard, admin, standins):
    async def scenario():
        async with AsyncSwitchboard(switchboard["url"], switchboard["key"]) as sb:
            return await asyncio.gather(
                sb.messages(category="messages", messages=HELLO, max_tokens=40),
                sb.chat_completions(category="chat", messages=HELLO, max_tokens=40),
                sb.chat_completions(category="compat", messages=HELLO, max_tokens=40),
                sb.converse(category="converse", messages=[{"role": "user", "content": [{"text": "hi [[output_tokens=5]]"}]}],
                            inferenceConfig={"maxTokens": 10}),
                sb.messages(category="bedrock_claude", messages=HELLO, max_tokens=40),
                sb.messages(category="snapshot", messages=HELLO, max_tokens=40),
            )

    message, completion, compatible, converse, bedrock_message, snapshot = asyncio.run(scenario())
    assert isinstance(message, anthropic.types.Message) and message.switchboard_report["output_tokens"] == 12
    assert isinstance(completion, openai.types.chat.ChatCompletion) and completion.switchboard_report["output_tokens"] == 12
    assert compatible.switchboard_decision.model.key == "glm-a"
    assert converse["switchboard_report"]["output_tokens"] == 5
    assert isinstance(bedrock_message, anthropic.types.Message) and bedrock_message.switchboard_decision.model.key == "bedrock-sonnet"
    assert snapshot.switchboard_report["model"]["key"] == "claude-other"
    assert recorded(admin, "converse", converse["switchboard_decision"].id)["output_tokens"] == 5
