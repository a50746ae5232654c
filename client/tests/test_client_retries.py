"""The retry loop: a provider 429, 404 or 5xx is reported and the next candidate tried with `exclude` and `attempt`."""

from __future__ import annotations

import asyncio

import anthropic
import openai
import pytest
from conftest import decisions
from switchboard_client import AsyncSwitchboard, NoCapacity, Switchboard

HELLO = [{"role": "user", "content": "Say hello. [[output_tokens=12]]"}]


def test_a_429_is_reported_and_the_next_candidate_answers(sb, admin, standins):
    standins["anthropic"].fail("claude-429", 429)
    try:
        reply = sb.messages(category="retry_429", messages=HELLO, max_tokens=30)
    finally:
        standins["anthropic"].fail("claude-429", None)
    assert reply.switchboard_decision.model.key == "claude-b"
    assert reply.switchboard_decision.attempt == 2
    first, second = decisions(admin, "retry_429")[-2:]
    assert (first["model"]["key"], second["model"]["key"]) == ("claude-429", "claude-b")
    assert second["outcome"] == "fallback" and second["trace"][0]["cause"] == "excluded"
    assert first["reported"] and second["reported"] and second["output_tokens"] == 12


def test_a_404_is_reported_as_not_found(sb, admin):
    reply = sb.messages(category="retry_404", messages=HELLO, max_tokens=30)  # claude-nf's id is unknown to the stand-in: 404
    assert reply.switchboard_decision.model.key == "claude-b"
    first = decisions(admin, "retry_404")[-2]
    assert first["model"]["key"] == "claude-nf" and first["reported"]
    # not_found took the model out of service until a one-token probe answers or a person brings it back.
    decision = sb.route("retry_404", dry_run=True)
    assert decision.model.key == "claude-b" and decision.trace[0]["cause"] == "unavailable"


def test_a_bedrock_model_the_key_cannot_reach_is_not_found(sb, admin):
    response = sb.converse(category="retry_404_bedrock", messages=[{"role": "user", "content": [{"text": "hi"}]}], inferenceConfig={"maxTokens": 10})
    assert response["switchboard_decision"].model.key == "nova-pro"
    assert sb.route("retry_404_bedrock", dry_run=True).trace[0]["cause"] == "unavailable"


def test_a_5xx_is_reported_as_error_and_the_next_candidate_answers(sb, admin, standins):
    standins["openai"].fail("gpt-500", 500)
    try:
        completion = sb.chat_completions(category="retry_5xx", messages=HELLO, max_tokens=30)
    finally:
        standins["openai"].fail("gpt-500", None)
    assert completion.switchboard_decision.model.key == "gpt-b"
    first, second = decisions(admin, "retry_5xx")[-2:]
    assert first["model"]["key"] == "gpt-500" and first["reported"] and second["model"]["key"] == "gpt-b"


def test_after_max_attempts_the_providers_error_is_raised(switchboard, admin, standins):
    for model in ("claude-exhaust-1", "claude-exhaust-2"):
        standins["anthropic"].fail(model, 529)
    try:
        with Switchboard(switchboard["url"], switchboard["key"], max_attempts=2) as sb, pytest.raises(anthropic.InternalServerError) as error:
            sb.messages(category="exhaust", messages=HELLO, max_tokens=30)
    finally:
        for model in ("claude-exhaust-1", "claude-exhaust-2"):
            standins["anthropic"].fail(model, None)
    assert error.value.status_code == 529
    rows = decisions(admin, "exhaust")
    assert [row["model"]["key"] for row in rows] == ["claude-exhaust-1", "claude-exhaust-2"]  # claude-d never tried
    assert all(row["reported"] for row in rows)


def test_a_refusal_after_failures_is_raised_with_the_last_provider_error_as_cause(switchboard, standins):
    standins["anthropic"].fail("claude-429", 429)
    standins["anthropic"].fail("claude-b", 429)
    try:
        with Switchboard(switchboard["url"], switchboard["key"], max_attempts=5) as sb, pytest.raises(NoCapacity) as error:
            sb.messages(category="retry_429", messages=HELLO, max_tokens=30)
    finally:
        standins["anthropic"].fail("claude-429", None)
        standins["anthropic"].fail("claude-b", None)
    assert isinstance(error.value.__cause__, anthropic.RateLimitError)
    assert {entry["cause"] for entry in error.value.trace} == {"excluded"}


def test_async_retries(switchboard, admin, standins):
    standins["anthropic"].fail("claude-429-async", 429)
    standins["openai"].fail("gpt-500-async", 503)

    async def scenario():
        async with AsyncSwitchboard(switchboard["url"], switchboard["key"]) as sb:
            return (await sb.messages(category="retry_429_async", messages=HELLO, max_tokens=30),
                    await sb.messages(category="retry_404_async", messages=HELLO, max_tokens=30),
                    await sb.chat_completions(category="retry_5xx_async", messages=HELLO, max_tokens=30))

    try:
        limited, missing, failing = asyncio.run(scenario())
    finally:
        standins["anthropic"].fail("claude-429-async", None)
        standins["openai"].fail("gpt-500-async", None)
    assert limited.switchboard_decision.model.key == "claude-b" and limited.switchboard_decision.attempt == 2
    assert missing.switchboard_decision.model.key == "claude-b"
    assert failing.switchboard_decision.model.key == "gpt-b"
    assert isinstance(failing, openai.types.chat.ChatCompletion)
    for category in ("retry_429_async", "retry_404_async", "retry_5xx_async"):
        assert all(row["reported"] for row in decisions(admin, category))
