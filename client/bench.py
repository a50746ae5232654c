"""What the client adds to an LLM call: route + report time per call, and a call through the client vs. the bare SDK.

    .venv/bin/python client/bench.py [-n 200] [--runserver]

Starts the provider stand-ins (`python -m tests.standins`, a process of their own) and a Switchboard on a temporary
SQLite database (gunicorn, 2 gthread workers; `--runserver` for Django's server), then makes N calls each way with the
anthropic and openai SDKs against the stand-ins and prints the median and p99 in milliseconds: the bare SDK call, the
same call through the client, and the client's own part of it (route + report). Run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE / "tests")]

import anthropic  # noqa: E402
import openai  # noqa: E402
from sb_server import REPO, Server, prepare, server_env  # noqa: E402
from switchboard_client import Switchboard  # noqa: E402

MESSAGES = [{"role": "user", "content": "Summarise the incident report in two lines. [[output_tokens=50]]"}]


class Timed(Switchboard):
    """Records the time spent asking Switchboard (route) and telling it (report) around each call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.route_ms: list[float] = []
        self.report_ms: list[float] = []

    def route(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return super().route(*args, **kwargs)
        finally:
            self.route_ms.append((time.perf_counter() - start) * 1000)

    def report_observation(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return super().report_observation(*args, **kwargs)
        finally:
            self.report_ms.append((time.perf_counter() - start) * 1000)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def figures(values: list[float]) -> str:
    return f"median {statistics.median(values):6.2f} ms   p99 {percentile(values, 0.99):6.2f} ms"


def timed(call: Any, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=200, help="calls per measurement (default 200)")
    parser.add_argument("--runserver", action="store_true", help="serve Switchboard with manage.py runserver instead of gunicorn")
    args = parser.parse_args()

    standins = subprocess.Popen([sys.executable, "-m", "tests.standins", "--anthropic-port", "0", "--openai-port", "0",
                                 "--model", "anthropic", "claude-bench", "--model", "openai", "gpt-bench"],
                                cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert standins.stdout is not None
    urls = json.loads(standins.stdout.readline())
    with tempfile.TemporaryDirectory() as tmp:
        var_dir = Path(tmp)
        policy = {
            "version": 1, "default_tier": "bench",
            "providers": [
                {"slug": "anthropic", "kind": "anthropic", "base_url": urls["anthropic"], "quotas": [
                    {"metric": "tokens", "window": "minute", "limit": 1_000_000_000}]},
                {"slug": "openai", "kind": "openai", "base_url": urls["openai"] + "/v1", "quotas": [
                    {"metric": "tokens", "window": "minute", "limit": 1_000_000_000}]},
            ],
            "models": [{"key": "claude-bench", "provider": "anthropic", "model_id": "claude-bench", "context_window": 200_000},
                       {"key": "gpt-bench", "provider": "openai", "model_id": "gpt-bench", "context_window": 128_000}],
            "tiers": [{"slug": "bench", "models": ["claude-bench"]}],
            "categories": [{"slug": "bench", "fallback": "allow"}, {"slug": "bench_chat", "fallback": "allow"}],
            "routes": [{"category": "bench", "complexity": "any", "models": ["claude-bench"]},
                       {"category": "bench_chat", "complexity": "any", "models": ["gpt-bench"]}],
        }
        (var_dir / "policy.json").write_text(json.dumps(policy))
        env = server_env(var_dir, DJANGO_DEBUG="0")
        key = prepare(env, var_dir / "policy.json")["keys"]["client-tests"]
        server = Server(var_dir, env, gunicorn=not args.runserver).start()
        try:
            direct_anthropic = anthropic.Anthropic(api_key="bench", base_url=urls["anthropic"], max_retries=0)
            direct_openai = openai.OpenAI(api_key="bench", base_url=urls["openai"] + "/v1", max_retries=0)
            clients = {"anthropic": direct_anthropic, "openai": direct_openai}
            with Timed(server.url, key, clients=clients) as sb:
                for _ in range(20):  # warm up connections and imports
                    sb.messages(category="bench", messages=MESSAGES, max_tokens=100)
                    direct_anthropic.messages.create(model="claude-bench", messages=MESSAGES, max_tokens=100)
                sb.route_ms.clear()
                sb.report_ms.clear()
                print(f"switchboard-client overhead, {args.n} calls each ({'runserver' if args.runserver else 'gunicorn 2x4 gthread'}, SQLite)")
                rows = []
                for name, direct, through in (
                    ("anthropic messages", lambda: direct_anthropic.messages.create(model="claude-bench", messages=MESSAGES, max_tokens=100),
                     lambda: sb.messages(category="bench", messages=MESSAGES, max_tokens=100)),
                    ("openai chat", lambda: direct_openai.chat.completions.create(model="gpt-bench", messages=MESSAGES, max_tokens=100),
                     lambda: sb.chat_completions(category="bench_chat", messages=MESSAGES, max_tokens=100)),
                ):
                    sb.route_ms.clear()
                    sb.report_ms.clear()
                    bare = timed(direct, args.n)
                    routed = timed(through, args.n)
                    both = [r + p for r, p in zip(sb.route_ms, sb.report_ms, strict=True)]
                    rows.append((name, bare, routed, sb.route_ms[:], sb.report_ms[:], both))
                for name, bare, routed, route_ms, report_ms, both in rows:
                    print(f"  {name}")
                    print(f"    bare SDK call          {figures(bare)}")
                    print(f"    through the client     {figures(routed)}")
                    print(f"    route                  {figures(route_ms)}")
                    print(f"    report                 {figures(report_ms)}")
                    print(f"    route + report         {figures(both)}")
        finally:
            server.stop()
            standins.terminate()
            standins.wait(timeout=10)


if __name__ == "__main__":
    main()
