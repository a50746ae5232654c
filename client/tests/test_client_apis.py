"""Each helper names the APIs it can call (`apis`): over a route that mixes API families, Switchboard passes the other
models over, so nothing is reserved for a call never sent and the audit shows no fallback; a route with none of them
is refused naming the APIs that would serve it."""

from __future__ import annotations

import anthropic
import pytest
from conftest import decisions
from switchboard_client import NoCapacity, RequestError

HELLO = [{"role": "user", "content": "Say hello. [[output_tokens=12]]"}]


def gpt_mixed_used(admin) -> float:
    rows = admin.get("/api/v1/quotas").raise_for_status().json()["results"]
    return next(row["used"] for row in rows if row["name"] == "gpt-mixed-tpm")


def test_a_mixed_route_through_a_single_api_helper_leaves_no_fallback_or_reservation(sb, admin, standins):
    before = len(decisions(admin, "mixed_family"))

    reply = sb.messages(category="mixed_family", messages=HELLO, max_tokens=40)

    assert reply.switchboard_decision.model.key == "claude-mixed"
    rows = decisions(admin, "mixed_family")[before:]
    assert [(row["model"]["key"], row["outcome"]) for row in rows] == [("claude-mixed", "primary")]
    assert rows[0]["trace"][0]["cause"] == "api"
    assert gpt_mixed_used(admin) == 0
    assert not standins["openai"].calls_for("gpt-mixed")


def test_the_other_helper_gets_the_other_family_of_the_same_route(sb, admin):
    completion = sb.chat_completions(category="mixed_family", messages=HELLO, max_tokens=40)

    assert completion.switchboard_decision.model.key == "gpt-mixed"
    assert completion.switchboard_decision.outcome == "primary"


def test_a_route_no_helper_api_can_serve_is_refused_naming_the_apis_that_would(sb):
    with pytest.raises(RequestError) as refused:
        sb.converse(category="mixed_family", messages=[{"role": "user", "content": [{"text": "hi"}]}])

    assert refused.value.code == "unroutable" and refused.value.body["cause"] == "api"
    assert refused.value.body["valid"] == ["anthropic", "openai"]


def test_routed_blocks_name_their_apis(sb):
    with sb.routed("mixed_family", apis=["anthropic"]) as call:
        assert call.decision.model.key == "claude-mixed"
        call.report(usage=None)


def test_a_refusal_after_a_provider_failure_names_the_providers_answer_and_chains_it(sb):
    with pytest.raises(NoCapacity) as refused:
        sb.messages(category="named_404", messages=HELLO, max_tokens=20)

    assert "after claude-nf-named answered HTTP 404 (not_found_error: model: claude-missing-3)" in str(refused.value)
    assert [(entry["model"]["key"], entry["cause"]) for entry in refused.value.trace] == [("claude-nf-named", "excluded")]
    assert isinstance(refused.value.__cause__, anthropic.NotFoundError)
