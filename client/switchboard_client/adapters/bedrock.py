"""Amazon Bedrock Converse and ConverseStream through boto3 (`pip install switchboard-client[bedrock]`), in the
decision's `region`, invoking its `invoke_id` (an inference profile where the model needs one).

Clients come from one boto3 Session per Switchboard instance (the standard AWS credential chain and `AWS_*`
variables, e.g. `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`), one per region, with
`Config(retries={"total_max_attempts": 1, "mode": "standard"})` so that Switchboard hears of every throttle. A boto3
client handed in is used as it is: build it with the same retry config. boto3 has no async API, so the async client
runs each boto3 call (and each read of a stream) in `asyncio.to_thread`. Bedrock sends no rate-limit headers.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

from switchboard_client.api import Model
from switchboard_client.estimate import CHARS_PER_TOKEN
from switchboard_client.usage import Observation, Usage, answering_model, observe, usage_of

KINDS = frozenset({"bedrock"})
NO_RETRIES = {"total_max_attempts": 1, "mode": "standard"}
_END = object()


def make_client(model: Model, *, session: Any, handed: Any = None) -> Any:
    if handed is not None:
        return handed
    from botocore.config import Config

    return session.client("bedrock-runtime", region_name=model.region, config=Config(retries=dict(NO_RETRIES)))


def new_session() -> Any:
    import boto3

    return boto3.session.Session()


def converse(client: Any, model: Model, params: dict[str, Any]) -> tuple[dict[str, Any], Observation]:
    response = client.converse(modelId=model.invoke_id, **params)
    return response, observe(response)


async def aconverse(client: Any, model: Model, params: dict[str, Any]) -> tuple[dict[str, Any], Observation]:
    response = await asyncio.to_thread(client.converse, modelId=model.invoke_id, **params)
    return response, observe(response)


def open_stream(client: Any, model: Model, params: dict[str, Any]) -> dict[str, Any]:
    return client.converse_stream(modelId=model.invoke_id, **params)


async def aopen_stream(client: Any, model: Model, params: dict[str, Any]) -> dict[str, Any]:
    return await asyncio.to_thread(client.converse_stream, modelId=model.invoke_id, **params)


def events(response: dict[str, Any]) -> Iterator[dict[str, Any]]:
    return iter(response["stream"])


async def aevents(response: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """The event stream read in a worker thread, one event at a time (boto3 has no async API)."""
    iterator = iter(response["stream"])
    while True:
        event = await asyncio.to_thread(next, iterator, _END)
        if event is _END:
            return
        yield event


def close(response: dict[str, Any]) -> None:
    stream = response.get("stream")
    if stream is not None and hasattr(stream, "close"):
        stream.close()


class ConverseAccumulator:
    """Reads a ConverseStream: the `metadata` event (last) carries the usage and any `trace.promptRouter`; text and
    tool-input deltas are counted in case the stream stops before it (the input is then the routing estimate)."""

    def __init__(self, estimated_input: int = 0) -> None:
        self.estimated_input = estimated_input
        self.metadata: dict[str, Any] | None = None
        self.characters = 0

    def feed(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        if "metadata" in event:
            self.metadata = event["metadata"]
        delta = (event.get("contentBlockDelta") or {}).get("delta") or {}
        for value in (delta.get("text"), (delta.get("toolUse") or {}).get("input"), (delta.get("reasoningContent") or {}).get("text")):
            if isinstance(value, str):
                self.characters += len(value)

    def observation(self) -> Observation:
        if self.metadata is None:
            return Observation(Usage(input_tokens=self.estimated_input, output_tokens=math.ceil(self.characters / CHARS_PER_TOKEN)))
        usage = usage_of(self.metadata.get("usage"))
        if "usage" not in self.metadata:
            usage = replace(usage, output_tokens=math.ceil(self.characters / CHARS_PER_TOKEN))
        return Observation(usage, answering_model(self.metadata))
