"""route(), report() and the typed errors, sync and async, against the real server."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx2
import pytest
from conftest import recorded
from sb_server import REPO, Server, server_env
from switchboard_client import (
    AsyncSwitchboard,
    AttemptsExhausted,
    FailedFast,
    NoCapacity,
    QuotaExceeded,
    Refused,
    RequestError,
    Switchboard,
    SwitchboardError,
    Unavailable,
    Usage,
)
from switchboard_client.errors import error_for


def test_route_returns_a_typed_decision(sb):
    decision = sb.route("messages", complexity="high", estimated_input_tokens=120, estimated_output_tokens=300)
    assert decision.outcome == "primary"
    assert decision.model.key == "claude-a"
    assert decision.model.kind == "anthropic"
    assert decision.model.provider == "anthropic"
    assert decision.model.invoke_id == "claude-a"
    assert decision.model.base_url and decision.model.base_url.startswith("http://127.0.0.1:")
    assert decision.primary == "claude-a"
    assert decision.trace[0]["verdict"] == "chosen"
    assert decision.policy_version
    sb.release(decision)


def test_route_by_tier_and_bedrock_region(sb):
    assert sb.route(tier="default", dry_run=True).model.key == "claude-a"
    decision = sb.route("bedrock_claude", dry_run=True)
    assert decision.dry_run
    assert (decision.model.kind, decision.model.region, decision.model.base_url) == ("bedrock", "us-east-1", None)


def test_route_excludes_models(sb):
    decision = sb.route("messages", exclude=["claude-a"])
    assert decision.outcome == "fallback"
    assert decision.model.key == "claude-b"
    assert decision.trace[0]["cause"] == "excluded"
    sb.release(decision)


def test_route_sends_the_expected_cache_reads(sb):
    assert sb.route("messages", estimated_input_tokens=2000, estimated_cache_read_tokens=1500, dry_run=True).model.key == "claude-a"
    with pytest.raises(RequestError) as error:
        sb.route("messages", estimated_input_tokens=10, estimated_cache_read_tokens=20, dry_run=True)
    assert "estimated_cache_read_tokens" in error.value.detail


def test_bad_input_raises_request_error_with_the_api_detail(sb):
    with pytest.raises(RequestError) as error:
        sb.route("no_such_category")
    assert error.value.status == 400
    assert "no_such_category" in error.value.detail
    with pytest.raises(RequestError) as error:
        sb.route("messages", complexity="extreme")  # type: ignore[arg-type]
    assert error.value.code == "unknown_complexity"


def test_a_key_without_scope_raises_request_error(switchboard):
    with Switchboard(switchboard["url"], "not-a-key") as sb, pytest.raises(RequestError) as error:
        sb.route("messages")
    assert error.value.status in (401, 403)


def test_fail_fast_when_a_never_fallback_primary_is_unavailable(sb):
    with pytest.raises(FailedFast) as error:
        sb.route("disabled_never")
    refusal = error.value
    assert type(refusal) is FailedFast
    assert (refusal.status, refusal.code, refusal.quota) == (503, "primary_unavailable", False)
    assert refusal.decision_id and refusal.primary == "claude-off"
    assert refusal.trace[0]["model"]["key"] == "claude-off"


def test_no_capacity_when_every_candidate_is_passed_over(sb):
    with pytest.raises(NoCapacity) as error:
        sb.route("disabled_allow")
    assert (error.value.status, error.value.code) == (503, "no_capacity")
    assert isinstance(error.value, Refused) and not error.value.quota


def test_quota_exceeded_for_a_never_fallback_category_names_retry_after(sb):
    sb.report(sb.route("quota_never"), Usage())  # takes the one request a minute the primary's quota holds
    with pytest.raises(QuotaExceeded) as error:
        sb.route("quota_never")
    refusal = error.value
    assert isinstance(refusal, FailedFast)
    assert (refusal.status, refusal.code, refusal.quota) == (429, "quota_exceeded", True)
    assert refusal.retry_after is not None and 0 < refusal.retry_after <= 120


def test_no_capacity_at_quota_is_a_429_with_retry_after(sb):
    sb.report(sb.route("quota_allow"), Usage())
    sb.report(sb.route("quota_allow"), Usage())  # the fallback's quota
    with pytest.raises(NoCapacity) as error:
        sb.route("quota_allow")
    assert error.value.quota and error.value.status == 429
    assert error.value.retry_after is not None


def test_attempts_exhausted(sb):
    sb.release(sb.route("attempts", attempt=2))
    with pytest.raises(AttemptsExhausted) as error:
        sb.route("attempts", attempt=3)
    assert (error.value.status, error.value.code) == (429, "attempts_exhausted")


def test_attempts_exhausted_maps_from_its_answer():
    error = error_for(429, {"error": "attempts_exhausted", "detail": "3 > 2", "decision_id": "d", "trace": []}, None)
    assert isinstance(error, AttemptsExhausted) and error.decision_id == "d" and error.retry_after is None


def test_unreachable_switchboard_raises_unavailable_after_bounded_retries():
    with socket_port() as port, Switchboard(f"http://127.0.0.1:{port}", "key", retries=2, backoff=0.001) as sb:
        with pytest.raises(Unavailable) as error:
            sb.route("messages")
    assert "cannot be reached" in str(error.value)
    assert isinstance(error.value, SwitchboardError)


def test_counters_unavailable_is_retried_then_raised_as_unavailable(switchboard):
    """A second server on the same database whose Redis is down and told to refuse answers 503 counters_unavailable."""
    with socket_port() as dead_redis:
        env = server_env(switchboard["var_dir"], REDIS_URL=f"redis://127.0.0.1:{dead_redis}/0", ROUTER_REDIS_DOWN="refuse")
        env["SECRET_KEY"] = switchboard["env"]["SECRET_KEY"]
        server = Server(switchboard["var_dir"], env).start()
        try:
            answer = httpx2.post(server.url + "/api/v1/route", json={"category": "messages"},
                                 headers={"Authorization": f"Bearer {switchboard['key']}"}, timeout=10)
            assert (answer.status_code, answer.json().get("error")) == (503, "counters_unavailable"), answer.text
            with Switchboard(server.url, switchboard["key"], retries=2, backoff=0.001) as sb, pytest.raises(Unavailable) as error:
                sb.route("messages")
            assert error.value.code == "counters_unavailable" and error.value.status == 503
        finally:
            server.stop()


def test_report_is_idempotent(sb, admin):
    decision = sb.route("idempotent", estimated_input_tokens=50, estimated_output_tokens=100)
    usage = Usage(input_tokens=40, output_tokens=60, cache_read_input_tokens=5)
    first = sb.report(decision, usage)
    again = sb.report(decision, usage)  # e.g. a retry after a lost answer
    assert again["usage_id"] == first["usage_id"]
    assert first["idempotency_key"] == again["idempotency_key"] == decision.idempotency_key
    row = recorded(admin, "idempotent", decision.id)
    assert row["reported"] and (row["input_tokens"], row["output_tokens"], row["cache_read_input_tokens"]) == (40, 60, 5)


def test_a_different_report_under_the_same_key_is_refused(sb, admin):
    decision = sb.route("idempotent")
    sb.report(decision, Usage(input_tokens=40, output_tokens=60))
    try:
        with pytest.raises(RequestError) as error:
            sb.report(decision, Usage(input_tokens=41, output_tokens=60))
        assert (error.value.status, error.value.code) == (409, "idempotency_key_reused")
    finally:
        assert recorded(admin, "idempotent", decision.id)["input_tokens"] == 40


def test_a_report_retried_after_a_lost_answer_counts_once(switchboard, admin):
    """The first POST /usage reaches the server but its answer is lost; the client's retry is answered 200, counted once."""
    sent = []

    def lose_first_answer(request: httpx2.Request) -> httpx2.Response:
        response = real.send(request)
        response.read()
        sent.append(response.status_code)
        if request.url.path.endswith("/usage") and len(sent) == 2:
            raise httpx2.ReadTimeout("answer lost", request=request)
        return response

    with httpx2.Client() as real, Switchboard(switchboard["url"], switchboard["key"], backoff=0.001,
                                              http_client=httpx2.Client(transport=httpx2.MockTransport(lose_first_answer))) as sb:
        decision = sb.route("idempotent")
        event = sb.report(decision, Usage(input_tokens=11, output_tokens=12))
    assert sent == [200, 201, 200]
    assert event["input_tokens"] == 11
    row = recorded(admin, "idempotent", decision.id)
    assert (row["input_tokens"], row["output_tokens"]) == (11, 12)


def test_report_failure_statuses(sb, admin):
    decision = sb.route("report_statuses")
    event = sb.report(decision, status="rate_limited", retry_after=7, ratelimit_headers={"x-ratelimit-remaining-requests": "0"})
    assert (event["status"], event["retry_after"]) == ("rate_limited", 7)
    assert event["ratelimit_headers"] == {"x-ratelimit-remaining-requests": "0"}


def test_answering_key_needs_read_scope(switchboard, sb):
    decision = sb.route("snapshot", dry_run=True)
    assert sb.answering_key(decision, "claude-other") == "claude-other"
    assert sb.answering_key(decision, "claude-snap") is None
    assert sb.answering_key(decision, "claude-unknown-20990101") is None
    with Switchboard(switchboard["url"], switchboard["no_read_key"]) as no_read:
        assert no_read.answering_key(decision, "claude-other") is None  # 403: the decision's model is reported


def test_health(sb):
    assert "database" in str(sb.health())


def test_async_route_report_and_errors(switchboard, admin):
    async def scenario():
        async with AsyncSwitchboard(switchboard["url"], switchboard["key"], backoff=0.001) as sb:
            decision = await sb.route("idempotent", estimated_input_tokens=10, estimated_output_tokens=10)
            event = await sb.report(decision, Usage(input_tokens=3, output_tokens=4))
            assert (await sb.report(decision, Usage(input_tokens=3, output_tokens=4)))["usage_id"] == event["usage_id"]
            with pytest.raises(RequestError):
                await sb.route("no_such_category")
            with pytest.raises(FailedFast):
                await sb.route("disabled_never")
            with pytest.raises(NoCapacity):
                await sb.route("disabled_allow")
            assert await sb.answering_key(decision, "claude-other") == "claude-other"
            return decision

    decision = asyncio.run(scenario())
    assert recorded(admin, "idempotent", decision.id)["input_tokens"] == 3

    async def unreachable():
        with socket_port() as port:
            async with AsyncSwitchboard(f"http://127.0.0.1:{port}", "key", backoff=0.001) as sb:
                await sb.route("messages")

    with pytest.raises(Unavailable):
        asyncio.run(unreachable())


class socket_port:
    """A port that nothing listens on while the block runs (bound, not listening: connections are refused)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_client_package_is_importable_without_the_sdks():
    code = ("import sys; sys.modules['anthropic'] = sys.modules['openai'] = sys.modules['boto3'] = None; "
            "import switchboard_client; print(switchboard_client.__version__)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
