"""fail_open=: with Switchboard stopped mid-run, calls are served on the default model (the one Switchboard last answered
for the same call), their usage reports queued in memory (bounded, the number dropped logged) and every queued report
counted once Switchboard answers again. Refusals never fail open; without fail_open the client fails closed."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx2
import pytest
from conftest import policy
from sb_server import Server, prepare, server_env
from switchboard_client import AsyncSwitchboard, FailOpen, QuotaExceeded, Switchboard, Unavailable

HELLO = [{"role": "user", "content": "Say hello. [[output_tokens=12]]"}]


@pytest.fixture
def own_server(standins, tmp_path):
    """A Switchboard of this test's own, to stop and start again."""
    (tmp_path / "policy.json").write_text(json.dumps(policy({name: standin.url for name, standin in standins.items()})))
    env = server_env(tmp_path)
    keys = prepare(env, tmp_path / "policy.json")["keys"]
    server = Server(tmp_path, env).start()
    try:
        yield server, keys["client-tests"]
    finally:
        server.stop()


def failopen_used(server: Server, key: str) -> int:
    rows = httpx2.get(server.url + "/api/v1/quotas", headers={"Authorization": f"Bearer {key}"}).raise_for_status().json()["results"]
    return next(row["used"] for row in rows if row["name"] == "failopen-requests")


def test_switchboard_stopped_mid_run_calls_go_to_the_default_and_queued_reports_count_after_it_restarts(own_server, standins, caplog):
    server, key = own_server
    calls = standins["anthropic"].calls_for
    with Switchboard(server.url, key, retries=0, timeout=2, fail_open=FailOpen(max_queued=3, recheck_after=0)) as sb:
        assert not sb.messages(category="failopen", messages=HELLO, max_tokens=30).switchboard_decision.fail_open
        with sb.routed("quota_never") as call:
            call.report(usage=None)
        served_before = len(calls("claude-failopen"))

        server.stop()
        replies = [sb.messages(category="failopen", messages=HELLO, max_tokens=30) for _ in range(3)]
        stream = sb.messages(category="failopen", messages=HELLO, max_tokens=30, stream=True)
        stream.until_done()

        assert all(reply.switchboard_decision.fail_open and reply.switchboard_report["queued"] for reply in replies)
        assert stream.switchboard_decision.fail_open and stream.switchboard_report["queued"]
        assert len(calls("claude-failopen")) == served_before + 4
        assert sb.queued_reports == 3  # the oldest of four dropped
        with pytest.raises(Unavailable):  # no default known for a category never answered
            sb.messages(category="messages", messages=HELLO, max_tokens=30)

        server.start()
        caplog.set_level(logging.WARNING, logger="switchboard_client")
        after = sb.messages(category="failopen", messages=HELLO, max_tokens=30)
        sb.flush_reports()  # waits for the flush that Switchboard's answer started
        assert not after.switchboard_decision.fail_open and sb.queued_reports == 0

        with pytest.raises(QuotaExceeded):  # a refusal is Switchboard's answer: never failed open
            sb.routed("quota_never").__enter__()

    assert failopen_used(server, key) == 1 + 3 + 1
    assert "sent 3 usage reports queued while failing open; 1 dropped" in caplog.text


def test_without_fail_open_the_client_fails_closed(own_server):
    server, key = own_server
    with Switchboard(server.url, key, retries=0) as sb:
        sb.messages(category="failopen", messages=HELLO, max_tokens=30)
        server.stop()
        with pytest.raises(Unavailable):
            sb.messages(category="failopen", messages=HELLO, max_tokens=30)
    server.start()


def test_a_given_default_serves_a_call_switchboard_never_answered(own_server, standins):
    server, key = own_server
    default = {"key": "claude-failopen", "provider": "anthropic", "kind": "anthropic", "model_id": "claude-failopen",
               "base_url": standins["anthropic"].url}
    server.stop()
    with Switchboard(server.url, key, retries=0, fail_open=FailOpen(defaults={"failopen": default})) as sb:
        answer = sb.chat(category="failopen", messages=HELLO, max_tokens=30)
        assert answer.fail_open and answer.model_key == "claude-failopen" and answer.text == "word" * 12
        assert sb.queued_reports == 1
        server.start()
        assert sb.flush_reports() == 1
    assert failopen_used(server, key) == 1


def test_async_fail_open_queues_and_sends_when_switchboard_answers_again(own_server, standins):
    server, key = own_server

    async def scenario() -> tuple[list, int]:
        async with AsyncSwitchboard(server.url, key, retries=0, fail_open=FailOpen(recheck_after=0)) as sb:
            await sb.messages(category="failopen", messages=HELLO, max_tokens=30)
            server.stop()
            answers = await asyncio.gather(*(sb.messages(category="failopen", messages=HELLO, max_tokens=30) for _ in range(3)))
            queued = sb.queued_reports
            server.start()
        return answers, queued  # aclose() sent what was queued

    answers, queued = asyncio.run(scenario())
    assert all(answer.switchboard_decision.fail_open for answer in answers) and queued == 3
    assert failopen_used(server, key) == 1 + 3
