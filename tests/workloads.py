"""A service's loop, as the tests drive it: ask Switchboard for a route, call the provider's stand-in with its
official SDK, report what the call used. Each call's `Call` says where it went and what the provider said."""

from dataclasses import dataclass

import anthropic
import boto3
import openai
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.standins import AnthropicStandIn, BedrockStandIn, OpenAIStandIn


@dataclass
class Task:
    """One LLM call a service wants to make: its prompt (a cached prefix, then the rest), max_tokens and what it writes."""

    prompt: str
    max_tokens: int
    output_tokens: int
    cached_prefix: str = ""
    expect_cache_read: bool = False  # the service has sent this prefix in the last minutes

    @property
    def input_tokens(self) -> int:
        """The whole input, cached or not, as the stand-ins count it (about four characters a token, per block)."""
        return sum(-(-len(text) // 4) for text in (self.cached_prefix, self.prompt) if text)

    @property
    def prefix_tokens(self) -> int:
        return -(-len(self.cached_prefix) // 4)


@dataclass
class Call:
    model: str | None  # the model key Switchboard chose; None when it refused
    outcome: str
    status: str = "ok"  # ok, or what the provider answered: rate_limited, error, not_found


class Service:
    """Routes, calls and reports through the test's API client; the stand-ins serve the providers' APIs."""

    def __init__(self, api, *, anthropic_standin: AnthropicStandIn | None = None, openai_standin: OpenAIStandIn | None = None,
                 bedrock_standin: BedrockStandIn | None = None, keys: dict[str, str] | None = None) -> None:
        self.api = api
        self.keys = keys or {}  # the provider's model id -> the Switchboard key, for a model that answered instead
        self.anthropic = anthropic.Anthropic(base_url=anthropic_standin.url, api_key="test", max_retries=0) if anthropic_standin else None
        self.openai = openai.OpenAI(base_url=f"{openai_standin.url}/v1", api_key="test", max_retries=0) if openai_standin else None
        self.bedrock = boto3.client(
            "bedrock-runtime", region_name="us-east-1", endpoint_url=bedrock_standin.url, aws_access_key_id="test",
            aws_secret_access_key="test", config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        ) if bedrock_standin else None

    def run(self, category: str, task: Task) -> Call:
        body = {"category": category, "estimated_input_tokens": task.input_tokens, "estimated_output_tokens": task.max_tokens}
        if task.expect_cache_read:
            body["estimated_cache_read_tokens"] = task.prefix_tokens
        response = self.api.post("/api/v1/route", body, format="json")
        if response.status_code != 200:
            return Call(model=None, outcome=response.json()["outcome"])
        decision = response.json()
        report, answered = getattr(self, f"_call_{decision['model']['kind'].replace('_compatible', '')}")(decision["model"]["invoke_id"], task)
        if answered and self.keys.get(answered, decision["model"]["key"]) != decision["model"]["key"]:
            report["model"] = self.keys[answered]
        reported = self.api.post("/api/v1/usage", {"decision_id": decision["decision_id"], **report}, format="json")
        assert reported.status_code == 201, reported.content
        return Call(model=decision["model"]["key"], outcome=decision["outcome"], status=report["status"])

    def _call_anthropic(self, invoke_id: str, task: Task) -> tuple[dict, str | None]:
        system = [{"type": "text", "text": task.cached_prefix, "cache_control": {"type": "ephemeral"}}] if task.cached_prefix else []
        try:
            raw = self.anthropic.messages.with_raw_response.create(
                model=invoke_id, max_tokens=task.max_tokens, system=system,
                messages=[{"role": "user", "content": f"{task.prompt}[[output_tokens={task.output_tokens}]]"}],
            )
        except anthropic.RateLimitError as exc:
            return {"status": "rate_limited", "retry_after": int(exc.response.headers.get("retry-after", "1"))}, None
        message = raw.parse()
        usage = message.usage
        return {
            "status": "ok", "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens or 0, "cache_write_input_tokens": usage.cache_creation_input_tokens or 0,
            "ratelimit_headers": {name: value for name, value in raw.headers.items() if name.startswith("anthropic-ratelimit-")},
        }, message.model

    def _call_openai(self, invoke_id: str, task: Task) -> tuple[dict, str | None]:
        try:
            raw = self.openai.chat.completions.with_raw_response.create(
                model=invoke_id, max_tokens=task.max_tokens,
                messages=[{"role": "user", "content": f"{task.cached_prefix}{task.prompt}[[output_tokens={task.output_tokens}]]"}],
            )
        except openai.RateLimitError:
            return {"status": "rate_limited"}, None
        completion = raw.parse()
        cached = completion.usage.prompt_tokens_details.cached_tokens if completion.usage.prompt_tokens_details else 0
        return {
            "status": "ok", "input_tokens": completion.usage.prompt_tokens - cached, "cache_read_input_tokens": cached,
            "output_tokens": completion.usage.completion_tokens,
            "ratelimit_headers": {name: value for name, value in raw.headers.items() if name.startswith("x-ratelimit-")},
        }, completion.model

    def _call_bedrock(self, invoke_id: str, task: Task) -> tuple[dict, str | None]:
        system = [{"text": task.cached_prefix}, {"cachePoint": {"type": "default"}}] if task.cached_prefix else []
        try:
            answer = self.bedrock.converse(
                modelId=invoke_id, system=system, inferenceConfig={"maxTokens": task.max_tokens},
                messages=[{"role": "user", "content": [{"text": f"{task.prompt}[[output_tokens={task.output_tokens}]]"}]}],
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ThrottlingException":
                return {"status": "rate_limited"}, None
            raise
        usage = answer["usage"]
        answered = answer.get("trace", {}).get("promptRouter", {}).get("invokedModelId")
        return {
            "status": "ok", "input_tokens": usage["inputTokens"], "output_tokens": usage["outputTokens"],
            "cache_read_input_tokens": usage.get("cacheReadInputTokens", 0), "cache_write_input_tokens": usage.get("cacheWriteInputTokens", 0),
        }, answered


def capacity(service: Service, kind: str, invoke_id: str, tasks: list[Task]) -> int:
    """How many of `tasks`, sent one after another straight to the provider (no Switchboard), it admits before its
    first throttle: what a router that foresees every throttle and falls back for no other reason sends there."""
    call = getattr(service, f"_call_{kind}")
    for admitted, task in enumerate(tasks):
        if call(invoke_id, task)[0]["status"] == "rate_limited":
            return admitted
    return len(tasks)
