"""Anthropic Messages API through the official `anthropic` SDK (`pip install switchboard-client[anthropic]`).

Clients are built with `max_retries=0` (Switchboard must hear of every 429) at the route answer's `base_url`, with
the key from `<PROVIDER>_API_KEY` or `ANTHROPIC_API_KEY`; a client handed in is used through
`with_options(max_retries=0)`. Non-streaming calls go through `with_raw_response` to read the rate-limit headers.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import replace
from typing import Any

from switchboard_client.adapters import credential_env
from switchboard_client.api import Model
from switchboard_client.estimate import CHARS_PER_TOKEN
from switchboard_client.usage import Observation, observe, ratelimit_headers, usage_of

KINDS = frozenset({"anthropic"})
USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


def _options(model: Model) -> dict[str, Any]:
    return {"base_url": model.base_url} if model.base_url else {}


def make_client(model: Model, *, is_async: bool, handed: Any = None) -> Any:
    if handed is not None:
        return handed.with_options(max_retries=0, **_options(model))
    import anthropic

    cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    key = credential_env(model.provider)
    return cls(max_retries=0, **_options(model), **({"api_key": key} if key else {}))


def create(client: Any, model: Model, params: dict[str, Any]) -> tuple[Any, Observation]:
    raw = client.messages.with_raw_response.create(model=model.invoke_id, **params)
    message = raw.parse()
    return message, observe(message, raw.headers)


async def acreate(client: Any, model: Model, params: dict[str, Any]) -> tuple[Any, Observation]:
    raw = await client.messages.with_raw_response.create(model=model.invoke_id, **params)
    message = raw.parse()
    if inspect.isawaitable(message):
        message = await message
    return message, observe(message, raw.headers)


def open_stream(client: Any, model: Model, params: dict[str, Any]) -> Any:
    return client.messages.create(model=model.invoke_id, stream=True, **params)


async def aopen_stream(client: Any, model: Model, params: dict[str, Any]) -> Any:
    return await client.messages.create(model=model.invoke_id, stream=True, **params)


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


class MessagesAccumulator:
    """Reads an Anthropic message stream: `message_start` carries the model and the input side of the usage,
    `message_delta` the output (cumulative) and any field that changed; text deltas are counted in case the stream
    stops before its final `message_delta`."""

    def __init__(self, headers: Any = None) -> None:
        self.headers = ratelimit_headers(headers)
        self.usage: dict[str, Any] = {}
        self.model: str | None = None
        self.iterations: list[Any] = []
        self.characters = 0
        self.final = False

    def _merge(self, usage: Any) -> None:
        for name in USAGE_FIELDS:
            value = _get(usage, name)
            if value is not None:
                self.usage[name] = value
        iterations = _get(usage, "iterations")
        if iterations:
            self.iterations = list(iterations)

    def feed(self, event: Any) -> None:
        kind = _get(event, "type")
        if kind == "message_start":
            message = _get(event, "message")
            self.model = _get(message, "model") or self.model
            self._merge(_get(message, "usage"))
        elif kind == "message_delta":
            self._merge(_get(event, "usage"))
            self.final = True
        elif kind == "content_block_delta":
            delta = _get(event, "delta")
            for name in ("text", "partial_json", "thinking"):
                value = _get(delta, name)
                if isinstance(value, str):
                    self.characters += len(value)

    def observation(self) -> Observation:
        usage = usage_of(self.usage)
        if not self.final:
            usage = replace(usage, output_tokens=max(usage.output_tokens, math.ceil(self.characters / CHARS_PER_TOKEN)))
        answered = next((str(_get(i, "model")) for i in reversed(self.iterations) if _get(i, "model")), None) or self.model
        return Observation(usage, answered, self.headers)
