"""`with sb.routed(...) as call:` with the caller's own SDK clients."""

from __future__ import annotations

import asyncio
import logging

import anthropic
import boto3
import openai
import pytest
from botocore.config import Config
from conftest import decisions, recorded
from switchboard_client import AsyncSwitchboard, FailedFast, Usage

HELLO = [{"role": "user", "content": "Say hello. [[output_tokens=12]]"}]


def test_routed_reports_an_anthropic_raw_response_with_its_headers(sb, admin):
    with sb.routed("routed", estimated_input_tokens=10, estimated_output_tokens=50) as call:
        model = call.decision.model
        client = anthropic.Anthropic(base_url=model.base_url, max_retries=0)
        raw = client.messages.with_raw_response.create(model=model.invoke_id, max_tokens=50, messages=HELLO)
        event = call.report(raw)
    assert event["output_tokens"] == 12
    assert event["ratelimit_headers"]["anthropic-ratelimit-requests-limit"] == "100000"
    assert recorded(admin, "routed", call.decision.id)["reported"]


def test_routed_reports_parsed_responses_of_the_three_sdks(sb, standins):
    with sb.routed("chat") as call:
        model = call.decision.model
        completion = openai.OpenAI(base_url=model.base_url, max_retries=0).chat.completions.create(
            model=model.invoke_id, max_tokens=20, messages=HELLO)
        assert call.report(completion)["output_tokens"] == 12
    with sb.routed("converse") as call:
        model = call.decision.model
        client = boto3.client("bedrock-runtime", region_name=model.region, config=Config(retries={"total_max_attempts": 1}))
        response = client.converse(modelId=model.invoke_id, messages=[{"role": "user", "content": [{"text": "hi [[output_tokens=3]]"}]}])
        assert call.report(response)["output_tokens"] == 3
    with sb.routed("snapshot") as call:
        message = anthropic.Anthropic(base_url=call.decision.model.base_url, max_retries=0).messages.create(
            model=call.decision.model.invoke_id, max_tokens=20, messages=HELLO)
        assert call.report(message)["model"]["key"] == "claude-other"  # another model answered
    with sb.routed("routed") as call:
        assert call.report(usage=Usage(input_tokens=5, output_tokens=6))["input_tokens"] == 5


def test_an_exception_leaving_the_block_is_reported_as_a_failure(sb, admin, standins):
    standins["anthropic"].fail("claude-routed-fail", 429)
    try:
        with pytest.raises(anthropic.RateLimitError), sb.routed("routed_fail") as call:
            anthropic.Anthropic(base_url=call.decision.model.base_url, max_retries=0).messages.create(
                model=call.decision.model.invoke_id, max_tokens=20, messages=HELLO)
    finally:
        standins["anthropic"].fail("claude-routed-fail", None)
    assert call.reported["status"] == "rate_limited" and call.reported["retry_after"] is None
    with pytest.raises(ValueError), sb.routed("routed") as call:
        raise ValueError("a bug in the caller")
    assert call.reported["status"] == "ok" and call.reported["input_tokens"] == 0  # released, the model not blamed


def test_a_block_without_a_report_releases_the_decision(sb, admin, caplog):
    with caplog.at_level(logging.WARNING, "switchboard_client"), sb.routed("routed") as call:
        pass
    assert "without a report" in caplog.text
    row = recorded(admin, "routed", call.decision.id)
    assert row["reported"] and row["input_tokens"] == 0


def test_routed_raises_refusals_at_the_start_of_the_block(sb):
    with pytest.raises(FailedFast), sb.routed("disabled_never"):
        pytest.fail("the block must not run")


def test_async_routed(switchboard, admin, standins):
    async def scenario():
        async with AsyncSwitchboard(switchboard["url"], switchboard["key"]) as sb:
            async with sb.routed("routed") as ok:
                client = anthropic.AsyncAnthropic(base_url=ok.decision.model.base_url, max_retries=0)
                raw = await client.messages.with_raw_response.create(model=ok.decision.model.invoke_id, max_tokens=20, messages=HELLO)
                await ok.report(raw)
            with pytest.raises(openai.NotFoundError):
                async with sb.routed("routed_not_found") as failing:  # the stand-in does not know gpt-routed-nf: 404
                    client = openai.AsyncOpenAI(base_url=failing.decision.model.base_url, max_retries=0)
                    await client.chat.completions.create(model=failing.decision.model.invoke_id, max_tokens=20, messages=HELLO)
            return ok, failing

    ok, failing = asyncio.run(scenario())
    assert ok.reported["output_tokens"] == 12 and ok.reported["ratelimit_headers"]
    assert failing.reported["status"] == "not_found"
    assert decisions(admin, "routed")
