"""What the client library adds to an LLM call, on PostgreSQL and Redis: `make bench` runs it after the server figures,
or on its own:

    .venv/bin/python bench/client_overhead.py [-n 200]

Starts the provider stand-ins (`python -m tests.standins`, a process of their own) and a Switchboard under gunicorn
(2 gthread workers x 4 threads) on PostgreSQL and Redis counters, then makes N calls each way, alternating one bare
SDK call against the stand-in and the same call through the client: sync (`messages`, `chat_completions`, `chat`),
async (`AsyncSwitchboard.messages`) and streaming (`messages(stream=True)` read to its end, sync and async). It
prints, in milliseconds, the median and p95 of the bare call, of the call through the client, and of what the client
added (each call through the client less the bare call made just before it; the pairing keeps the machine's drift
out of the difference). Run from the repository root.

Environment: BENCH_CLIENT_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/switchboard_bench_client — the
database is dropped and created), BENCH_CLIENT_REDIS_URL (default redis://127.0.0.1:6379/4 — flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "client" / "tests")]

import anthropic  # noqa: E402
import openai  # noqa: E402
import redis  # noqa: E402
from sb_server import Server, prepare, server_env  # noqa: E402
from switchboard_client import AsyncSwitchboard, Switchboard  # noqa: E402

DATABASE_URL = os.environ.get("BENCH_CLIENT_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/switchboard_bench_client")
REDIS_URL = os.environ.get("BENCH_CLIENT_REDIS_URL", "redis://127.0.0.1:6379/4")
MESSAGES = [{"role": "user", "content": "Summarise the incident report in two lines. [[output_tokens=50]]"}]
WARM_UP = 20


def policy(urls: dict[str, str]) -> dict[str, Any]:
    return {
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


def fresh_database() -> None:
    url = urlparse(DATABASE_URL)
    name = url.path.lstrip("/")
    for sql in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432),
                        "-U", url.username or "postgres", "-d", "postgres", "-c", sql], check=True)
    redis.Redis.from_url(REDIS_URL).flushdb()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def figures(values: list[float]) -> str:
    return f"median {statistics.median(values):6.2f} ms   p95 {percentile(values, 0.95):6.2f} ms"


def paired(bare: Callable[[], Any], through: Callable[[], Any], n: int) -> tuple[list[float], list[float]]:
    bare_ms, through_ms = [], []
    for index in range(WARM_UP + n):
        start = time.perf_counter()
        bare()
        middle = time.perf_counter()
        through()
        end = time.perf_counter()
        if index >= WARM_UP:
            bare_ms.append((middle - start) * 1000)
            through_ms.append((end - middle) * 1000)
    return bare_ms, through_ms


async def apaired(bare: Callable[[], Awaitable[Any]], through: Callable[[], Awaitable[Any]], n: int) -> tuple[list[float], list[float]]:
    bare_ms, through_ms = [], []
    for index in range(WARM_UP + n):
        start = time.perf_counter()
        await bare()
        middle = time.perf_counter()
        await through()
        end = time.perf_counter()
        if index >= WARM_UP:
            bare_ms.append((middle - start) * 1000)
            through_ms.append((end - middle) * 1000)
    return bare_ms, through_ms


def drain(stream: Any) -> None:
    for _ in stream:
        pass


async def adrain(stream: Any) -> None:
    async for _ in stream:
        pass


def sync_rows(url: str, key: str, urls: dict[str, str], n: int) -> list[tuple[str, list[float], list[float]]]:
    claude = anthropic.Anthropic(api_key="bench", base_url=urls["anthropic"], max_retries=0)
    gpt = openai.OpenAI(api_key="bench", base_url=urls["openai"] + "/v1", max_retries=0)
    with Switchboard(url, key, clients={"anthropic": claude, "openai": gpt}) as sb:
        return [
            ("sync messages", *paired(lambda: claude.messages.create(model="claude-bench", messages=MESSAGES, max_tokens=100),
                                      lambda: sb.messages(category="bench", messages=MESSAGES, max_tokens=100), n)),
            ("sync chat_completions", *paired(lambda: gpt.chat.completions.create(model="gpt-bench", messages=MESSAGES, max_tokens=100),
                                              lambda: sb.chat_completions(category="bench_chat", messages=MESSAGES, max_tokens=100), n)),
            ("sync chat (neutral, Anthropic)", *paired(
                lambda: claude.messages.create(model="claude-bench", messages=MESSAGES, max_tokens=100),
                lambda: sb.chat(category="bench", messages=MESSAGES, max_tokens=100), n)),
            ("streaming messages (sync)", *paired(
                lambda: drain(claude.messages.create(model="claude-bench", messages=MESSAGES, max_tokens=100, stream=True)),
                lambda: drain(sb.messages(category="bench", messages=MESSAGES, max_tokens=100, stream=True)), n)),
        ]


async def async_rows(url: str, key: str, urls: dict[str, str], n: int) -> list[tuple[str, list[float], list[float]]]:
    claude = anthropic.AsyncAnthropic(api_key="bench", base_url=urls["anthropic"], max_retries=0)

    async def bare_stream() -> None:
        await adrain(await claude.messages.create(model="claude-bench", messages=MESSAGES, max_tokens=100, stream=True))

    async with AsyncSwitchboard(url, key, clients={"anthropic": claude}) as sb:
        async def through_stream() -> None:
            await adrain(await sb.messages(category="bench", messages=MESSAGES, max_tokens=100, stream=True))

        return [
            ("async messages", *await apaired(lambda: claude.messages.create(model="claude-bench", messages=MESSAGES, max_tokens=100),
                                              lambda: sb.messages(category="bench", messages=MESSAGES, max_tokens=100), n)),
            ("streaming messages (async)", *await apaired(bare_stream, through_stream, n)),
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=200, help="calls per measurement and way (default 200)")
    args = parser.parse_args()

    standins = subprocess.Popen([sys.executable, "-m", "tests.standins", "--anthropic-port", "0", "--openai-port", "0",
                                 "--model", "anthropic", "claude-bench", "--model", "openai", "gpt-bench"],
                                cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert standins.stdout is not None
    urls = json.loads(standins.stdout.readline())
    fresh_database()
    with tempfile.TemporaryDirectory() as tmp:
        var_dir = Path(tmp)
        (var_dir / "policy.json").write_text(json.dumps(policy(urls)))
        env = server_env(var_dir, DJANGO_DEBUG="0", DATABASE_URL=DATABASE_URL, REDIS_URL=REDIS_URL,
                         ROUTER_REDIS_PREFIX="switchboard-bench-client:")
        key = prepare(env, var_dir / "policy.json")["keys"]["client-tests"]
        server = Server(var_dir, env, gunicorn=True).start()
        try:
            rows = sync_rows(server.url, key, urls, args.n) + asyncio.run(async_rows(server.url, key, urls, args.n))
        finally:
            server.stop()
            standins.terminate()
            standins.wait(timeout=10)
    print(f"switchboard-client overhead: {args.n} calls each way, paired (gunicorn 2x4 gthread, PostgreSQL + Redis counters, "
          f"{os.cpu_count()} cores)")
    for name, bare, through in rows:
        added = [t - b for b, t in zip(bare, through, strict=True)]
        print(f"  {name}")
        print(f"    bare SDK call          {figures(bare)}")
        print(f"    through the client     {figures(through)}")
        print(f"    added by the client    {figures(added)}")


if __name__ == "__main__":
    main()
