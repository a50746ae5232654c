"""One Switchboard shared by 8 threads: every call routed, answered and reported once, counted exactly."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from conftest import decisions
from switchboard_client import Switchboard

HELLO = [{"role": "user", "content": "Say hello. [[output_tokens=12]]"}]
THREADS = 8


def test_one_client_shared_by_eight_threads(switchboard, admin, standins):
    before = len(decisions(admin, "threads"))
    calls_before = len(standins["anthropic"].calls_for("claude-threads")) + len(standins["openai"].calls_for("gpt-threads"))

    def work(sb: Switchboard) -> list[tuple[str, int]]:
        answers = [
            sb.messages(category="threads", messages=HELLO, max_tokens=30),
            sb.chat_completions(category="threads", messages=HELLO, max_tokens=30),
            sb.chat(category="threads", messages=HELLO, max_tokens=30),
        ]
        seen = [(answer.switchboard_decision.id, answer.switchboard_report["output_tokens"]) for answer in answers]
        stream = sb.messages(category="threads", messages=HELLO, max_tokens=30, stream=True)
        stream.until_done()
        chat_stream = sb.chat(category="threads", messages=HELLO, max_tokens=30, stream=True)
        final = chat_stream.get_final_response()
        return [*seen, (stream.switchboard_decision.id, 12), (final.switchboard_decision.id, final.usage.output_tokens)]

    with Switchboard(switchboard["url"], switchboard["key"]) as sb, ThreadPoolExecutor(THREADS) as pool:
        results = [item for batch in pool.map(work, [sb] * THREADS) for item in batch]

    rows = decisions(admin, "threads")[before:]
    assert len(rows) == len(results) == THREADS * 5
    assert {row["decision_id"] for row in rows} == {decision_id for decision_id, _ in results}
    assert {tokens for _, tokens in results} == {12}
    assert all(row["reported"] and row["outcome"] == "primary" and row["output_tokens"] == 12 for row in rows)
    assert sorted(row["model"]["key"] for row in rows) == ["claude-threads"] * 16 + ["gpt-threads"] * 24
    calls_after = len(standins["anthropic"].calls_for("claude-threads")) + len(standins["openai"].calls_for("gpt-threads"))
    assert calls_after - calls_before == THREADS * 5
