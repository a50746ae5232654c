"""Does Switchboard foresee every provider throttle at scale? Services route, call and report through a running
Switchboard, against stand-ins that count like Bedrock, Anthropic and OpenAI (tests/standins), several at once;
then the same calls go straight to each primary model on fresh stand-ins.

Printed per provider: the calls, the provider throttles Switchboard did not foresee (goal 0), the fallbacks
Switchboard made for the primary's quotas, the throttles the provider gives the same calls sent straight to the
primary, and the fallbacks the provider would not have needed (quota fallbacks beyond those throttles).
"""

import json
import threading
from collections import Counter
from dataclasses import dataclass

import httpx2

from tests.standins import AnthropicModel, AnthropicStandIn, BedrockModel, BedrockStandIn, OpenAIModel, OpenAIStandIn, filler_text
from tests.workloads import Service, Task

SERVICES = 4
SONNET_4_5 = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU_3_5 = "us.anthropic.claude-3-5-haiku-20241022-v1:0"


@dataclass(frozen=True)
class Workload:
    provider: str
    category: str
    primary: str  # the primary's Switchboard key
    invoke_id: str
    tasks: tuple[Task, ...]  # each service's calls


WORKLOADS = (
    Workload("bedrock", "bench_bedrock", "bench-bedrock-sonnet", SONNET_4_5,
             tuple(Task(prompt=filler_text(1_500), max_tokens=1_200, output_tokens=600) for _ in range(12))),
    Workload("anthropic", "bench_anthropic", "bench-claude-sonnet", "claude-sonnet-4-5",
             tuple(Task(prompt=filler_text(300), cached_prefix=filler_text(6_000), max_tokens=800, output_tokens=200,
                        expect_cache_read=index > 0) for index in range(12))
             + tuple(Task(prompt=filler_text(3_000), max_tokens=1_000, output_tokens=400) for _ in range(8))),
    Workload("openai", "bench_openai", "bench-gpt", "gpt-4o",
             tuple(Task(prompt=filler_text(1_000), max_tokens=3_000, output_tokens=200) for _ in range(12))),
)


def standins() -> dict[str, object]:
    """Fresh stand-ins, with the limits bench/policy.yaml's quotas mirror."""
    return {
        "bedrock": BedrockStandIn({SONNET_4_5: BedrockModel(tokens_per_minute=120_000), HAIKU_3_5: BedrockModel()}),
        "anthropic": AnthropicStandIn({"claude-sonnet-4-5": AnthropicModel(input_tokens_per_minute=60_000, output_tokens_per_minute=12_000),
                                       "claude-haiku-4-5": AnthropicModel()}),
        "openai": OpenAIStandIn({"gpt-4o": OpenAIModel(tokens_per_minute=90_000), "gpt-4o-mini": OpenAIModel()}),
    }


class HttpApi:
    """The test client's `post(path, body, format=...)`, over HTTP to a running Switchboard."""

    def __init__(self, url: str, key: str) -> None:
        self.client = httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10)

    def post(self, path: str, body: dict, format: str = "json") -> httpx2.Response:  # noqa: A002 (the test client's keyword)
        return self.client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})


def _services(api, running: dict) -> Service:
    return Service(api, anthropic_standin=running["anthropic"], openai_standin=running["openai"], bedrock_standin=running["bedrock"])


def _in_parallel(serve) -> Counter:
    """Runs `serve(counts)` in SERVICES threads at once, each counting into its own Counter; returns their sum."""
    counts = [Counter() for _ in range(SERVICES)]
    threads = [threading.Thread(target=serve, args=(counted,)) for counted in counts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts, Counter())


def _serving(work) -> Counter:
    """`work(running_standins, counts)` in SERVICES threads against fresh stand-ins, started and stopped around it."""
    running = standins()
    for standin in running.values():
        standin.start()
    try:
        return _in_parallel(lambda counted: work(running, counted))
    finally:
        for standin in running.values():
            standin.stop()


def through_switchboard(url: str, key: str) -> Counter:
    """Every workload's calls through Switchboard, SERVICES services at once: per provider, the calls, the provider's
    throttles and the fallbacks for the primary's quotas, counted as (provider, what)."""
    def serve(running: dict, counted: Counter) -> None:
        service = _services(HttpApi(url, key), running)
        for workload in WORKLOADS:
            for task in workload.tasks:
                call = service.run(workload.category, task)
                counted[workload.provider, "calls"] += 1
                counted[workload.provider, "throttled"] += call.status == "rate_limited"
                counted[workload.provider, "quota fallbacks"] += call.model != workload.primary
    return _serving(serve)


def straight_to_the_primary() -> Counter:
    """The same calls sent straight to each primary: per provider, how many it throttles."""
    def serve(running: dict, counted: Counter) -> None:
        service = _services(None, running)
        for workload in WORKLOADS:
            call = getattr(service, f"_call_{workload.provider}")
            for task in workload.tasks:
                status = call(workload.invoke_id, task)[0]["status"]
                counted[workload.provider] += status == "rate_limited"
    return _serving(serve)


def report(url: str, key: str) -> None:
    routed = through_switchboard(url, key)
    direct = straight_to_the_primary()
    for workload in WORKLOADS:
        name, fallbacks, needed = workload.provider, routed[workload.provider, "quota fallbacks"], direct[workload.provider]
        print(f"{name:<10} {routed[name, 'calls']:>4} calls: provider throttles not foreseen {routed[name, 'throttled']},"
              f" quota fallbacks {fallbacks}, throttles of the same calls sent straight to the primary {needed},"
              f" unnecessary fallbacks {max(0, fallbacks - needed)}", flush=True)
