"""OpenAI chat completions through the official `openai` SDK (`pip install switchboard-client[openai]`), for OpenAI and
OpenAI-compatible providers (at the route answer's `base_url`).

Clients are built with `max_retries=0` (Switchboard must hear of every 429), with the key from `<PROVIDER>_API_KEY`
(e.g. ZHIPU_API_KEY) or `OPENAI_API_KEY`; a client handed in is used through `with_options(max_retries=0)`. Streams
are asked for `stream_options={"include_usage": True}`, without which OpenAI sends no usage: the last chunk then
carries the usage and no choices.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from switchboard_client.adapters import credential_env
from switchboard_client.api import Model
from switchboard_client.estimate import CHARS_PER_TOKEN
from switchboard_client.usage import Observation, observe, ratelimit_headers, usage_of

KINDS = frozenset({"openai", "openai_compatible"})


def _options(model: Model) -> dict[str, Any]:
    return {"base_url": model.base_url} if model.base_url else {}


def make_client(model: Model, *, is_async: bool, handed: Any = None) -> Any:
    if handed is not None:
        return handed.with_options(max_retries=0, **_options(model))
    import openai

    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    key = credential_env(model.provider)
    return cls(max_retries=0, **_options(model), **({"api_key": key} if key else {}))


def stream_params(params: dict[str, Any]) -> dict[str, Any]:
    return {**params, "stream": True, "stream_options": {**(params.get("stream_options") or {}), "include_usage": True}}


def create(client: Any, model: Model, params: dict[str, Any]) -> tuple[Any, Observation]:
    raw = client.chat.completions.with_raw_response.create(model=model.invoke_id, **params)
    completion = raw.parse()
    return completion, observe(completion, raw.headers)


async def acreate(client: Any, model: Model, params: dict[str, Any]) -> tuple[Any, Observation]:
    raw = await client.chat.completions.with_raw_response.create(model=model.invoke_id, **params)
    completion = raw.parse()
    if hasattr(completion, "__await__"):
        completion = await completion
    return completion, observe(completion, raw.headers)


def open_stream(client: Any, model: Model, params: dict[str, Any]) -> Any:
    return client.chat.completions.create(model=model.invoke_id, **stream_params(params))


async def aopen_stream(client: Any, model: Model, params: dict[str, Any]) -> Any:
    return await client.chat.completions.create(model=model.invoke_id, **stream_params(params))


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


class ChunkAccumulator:
    """Reads a chat completion stream: each chunk names the model, the last one (include_usage) the usage; content
    deltas are counted in case the stream stops before it."""

    def __init__(self, headers: Any = None, estimated_input: int = 0) -> None:
        self.headers = ratelimit_headers(headers)
        self.estimated_input = estimated_input
        self.usage: Any = None
        self.model: str | None = None
        self.characters = 0

    def feed(self, chunk: Any) -> None:
        self.model = _get(chunk, "model") or self.model
        usage = _get(chunk, "usage")
        if usage is not None:
            self.usage = usage
        for choice in _get(chunk, "choices") or []:
            delta = _get(choice, "delta")
            content = _get(delta, "content")
            if isinstance(content, str):
                self.characters += len(content)
            for call in _get(delta, "tool_calls") or []:
                arguments = _get(_get(call, "function"), "arguments")
                if isinstance(arguments, str):
                    self.characters += len(arguments)

    def observation(self) -> Observation:
        usage = usage_of(self.usage)
        if self.usage is None:
            usage = replace(usage, input_tokens=self.estimated_input, output_tokens=math.ceil(self.characters / CHARS_PER_TOKEN))
        return Observation(usage, self.model, self.headers)
