"""Safe retries and releases: every route call carries a request_id, so a route whose answer was lost (a read timeout)
is sent again and answered with the same decision, counted once; `release()` gives the whole reservation back."""

from __future__ import annotations

import json

import httpx2
from conftest import decisions
from switchboard_client import Switchboard


def quota_used(admin: httpx2.Client, name: str) -> float:
    rows = admin.get("/api/v1/quotas").raise_for_status().json()["results"]
    return next(row["used"] for row in rows if row["name"] == name)


def test_a_route_whose_answer_was_lost_is_sent_again_and_answered_with_the_same_decision(switchboard, admin):
    sent: list[dict] = []

    def lose_first_answer(request: httpx2.Request) -> httpx2.Response:
        response = real.send(request)
        response.read()
        if request.url.path.endswith("/route"):
            sent.append(json.loads(request.content))
            if len(sent) == 1:
                raise httpx2.ReadTimeout("answer lost", request=request)  # the server decided; the answer never came
        return response

    before = len(decisions(admin, "safe_retries"))
    with httpx2.Client() as real, Switchboard(switchboard["url"], switchboard["key"], backoff=0.001,
                                              http_client=httpx2.Client(transport=httpx2.MockTransport(lose_first_answer))) as sb:
        decision = sb.route("safe_retries")
        other = sb.route("safe_retries")
        sb.release(decision)
        sb.release(other)

    assert len(sent) == 3
    assert sent[0]["request_id"] == sent[1]["request_id"] != sent[2]["request_id"]
    rows = decisions(admin, "safe_retries")[before:]
    assert [row["decision_id"] for row in rows] == [decision.id, other.id]


def test_release_reports_not_sent_and_gives_back_the_whole_reservation(sb, admin):
    decision = sb.route("release", estimated_input_tokens=1000, estimated_output_tokens=500)
    assert quota_used(admin, "release-tpm") == 1000  # OpenAI counts the larger of the input and max_tokens

    event = sb.release(decision)

    assert event["status"] == "not_sent"
    assert quota_used(admin, "release-tpm") == 0
