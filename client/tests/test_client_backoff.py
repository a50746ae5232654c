"""On a route that never falls back, a provider 429 is waited out (its retry-after, under the client's cap) and the same
model tried again as the next attempt, which Switchboard counts; past the cap or the attempts, RateLimited names the
provider's retry time and chains its 429."""

from __future__ import annotations

import asyncio

import anthropic
import pytest
from conftest import decisions
from switchboard_client import AsyncSwitchboard, RateLimited, Switchboard

ASK = [{"role": "user", "content": "Summarise. [[output_tokens=100]]"}]


def drain(standins, model: str) -> None:
    """Another service of the same organisation takes most of the model's output tokens per minute: the next call of
    100 tokens has to wait about two seconds."""
    neighbour = anthropic.Anthropic(base_url=standins["anthropic"].url, api_key="sk-ant-test", max_retries=0)
    neighbour.messages.create(model=model, max_tokens=1900, messages=[{"role": "user", "content": "[[output_tokens=1900]]"}])


def test_a_429_storm_on_a_never_fallback_route_is_answered_after_the_back_off(sb, admin, standins):
    before = len(decisions(admin, "storm"))
    drain(standins, "claude-storm")

    reply = sb.messages(category="storm", messages=ASK, max_tokens=100)

    assert reply.switchboard_decision.model.key == "claude-storm" and reply.switchboard_decision.attempt == 2
    assert [call.status for call in standins["anthropic"].calls_for("claude-storm")[-2:]] == [429, 200]
    rows = decisions(admin, "storm")[before:]
    assert [(row["model"]["key"], row["outcome"]) for row in rows] == [("claude-storm", "primary")] * 2  # never claude-b
    assert all(row["reported"] for row in rows) and rows[-1]["output_tokens"] == 100


def test_past_the_cap_it_raises_rate_limited_with_the_providers_retry_time(switchboard, admin, standins):
    drain(standins, "claude-storm-cap")

    with Switchboard(switchboard["url"], switchboard["key"], backoff_cap=1) as sb, pytest.raises(RateLimited) as limited:
        sb.messages(category="storm_cap", messages=ASK, max_tokens=100)

    assert limited.value.retry_after >= 2 and limited.value.quota
    assert "claude-storm-cap answered HTTP 429 (rate_limit_error: " in str(limited.value)
    assert f"retry-after {limited.value.retry_after} s" in str(limited.value)
    assert isinstance(limited.value.__cause__, anthropic.RateLimitError)
    rows = decisions(admin, "storm_cap")
    assert [row["model"]["key"] for row in rows] == ["claude-storm-cap"]  # refused, not fallen back


def test_async_back_off_on_a_never_fallback_route(switchboard, standins):
    drain(standins, "claude-storm-async")

    async def scenario():
        async with AsyncSwitchboard(switchboard["url"], switchboard["key"]) as sb:
            return await sb.messages(category="storm_async", messages=ASK, max_tokens=100)

    reply = asyncio.run(scenario())
    assert reply.switchboard_decision.model.key == "claude-storm-async" and reply.switchboard_decision.attempt == 2
