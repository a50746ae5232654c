"""Anthropic Messages requests to Bedrock Converse and back, so that `messages()` can call a Bedrock model of the
Anthropic family and still return the anthropic SDK's `Message` (or its stream events).

Translated: `messages` (text, image and document blocks as base64, tool_use, tool_result, thinking), `system`,
`max_tokens`, `temperature`, `top_p`, `stop_sequences`, `tools`, `tool_choice`; `cache_control` on a block becomes
a `cachePoint` after it; `top_k` and `thinking` go in `additionalModelRequestFields`. The SDK-only options
(`extra_headers`, `timeout`, `metadata`, ...) are dropped; any other parameter raises TypeError.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from switchboard_client.usage import answering_model

DIRECT = {"temperature": "temperature", "top_p": "topP", "stop_sequences": "stopSequences"}
ADDITIONAL = ("top_k", "thinking")
DROPPED = frozenset({"extra_headers", "extra_query", "extra_body", "timeout", "metadata", "service_tier"})
STOP_REASONS = {"end_turn": "end_turn", "tool_use": "tool_use", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence",
                "guardrail_intervened": "refusal", "content_filtered": "refusal", "model_context_window_exceeded": "model_context_window_exceeded"}
CACHE_POINT = {"cachePoint": {"type": "default"}}


def family_is_anthropic(*model_ids: str) -> bool:
    """A Bedrock model of the Anthropic family: `anthropic.claude-…`, a profile `us.anthropic.…`, or an ARN of either."""
    return any(".anthropic." in "." + model_id.rsplit("/", 1)[-1] for model_id in model_ids)


def _with_cache_point(block: dict[str, Any], converted: dict[str, Any]) -> list[dict[str, Any]]:
    return [converted, dict(CACHE_POINT)] if isinstance(block, dict) and block.get("cache_control") else [converted]


def _source_bytes(source: dict[str, Any]) -> bytes:
    if source.get("type") != "base64":
        raise TypeError(f"Bedrock Converse takes base64 image and document sources, not {source.get('type')!r}")
    return base64.b64decode(source["data"])


def _block(block: Any) -> list[dict[str, Any]]:
    if isinstance(block, str):
        return [{"text": block}]
    kind = block.get("type")
    if kind == "text":
        converted: dict[str, Any] = {"text": block["text"]}
    elif kind == "image":
        source = block["source"]
        converted = {"image": {"format": str(source.get("media_type", "image/png")).split("/")[-1], "source": {"bytes": _source_bytes(source)}}}
    elif kind == "document":
        source = block["source"]
        if source.get("type") == "text":
            converted = {"document": {"format": "txt", "name": block.get("title") or "document", "source": {"bytes": source["data"].encode()}}}
        else:
            converted = {"document": {"format": "pdf", "name": block.get("title") or "document", "source": {"bytes": _source_bytes(source)}}}
    elif kind == "tool_use":
        converted = {"toolUse": {"toolUseId": block["id"], "name": block["name"], "input": block.get("input") or {}}}
    elif kind == "tool_result":
        content = block.get("content")
        parts = [{"text": content}] if isinstance(content, str) else [part for item in content or [] for part in _block(item)
                                                                        if "cachePoint" not in part]
        converted = {"toolResult": {"toolUseId": block["tool_use_id"], "content": parts or [{"text": ""}]}}
        if block.get("is_error"):
            converted["toolResult"]["status"] = "error"
    elif kind == "thinking":
        converted = {"reasoningContent": {"reasoningText": {"text": block["thinking"], "signature": block.get("signature", "")}}}
    elif kind == "redacted_thinking":
        converted = {"reasoningContent": {"redactedContent": base64.b64decode(block["data"])}}
    else:
        raise TypeError(f"content block type {kind!r} cannot be sent to Bedrock Converse")
    return _with_cache_point(block, converted)


def _content(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    return [part for block in content for part in _block(block)]


def to_converse(params: dict[str, Any]) -> dict[str, Any]:
    """boto3 `converse` keyword arguments (without modelId) for an Anthropic Messages request."""
    params = {name: value for name, value in params.items() if name not in DROPPED}
    request: dict[str, Any] = {"messages": [{"role": m["role"], "content": _content(m["content"])} for m in params.pop("messages")]}
    inference: dict[str, Any] = {"maxTokens": params.pop("max_tokens")}
    for name, target in DIRECT.items():
        if name in params:
            inference[target] = params.pop(name)
    request["inferenceConfig"] = inference
    system = params.pop("system", None)
    if system:
        request["system"] = _content(system)
    additional = {name: params.pop(name) for name in ADDITIONAL if name in params}
    if additional:
        request["additionalModelRequestFields"] = additional
    tools = params.pop("tools", None)
    tool_choice = params.pop("tool_choice", None)
    if tools and (tool_choice or {}).get("type") != "none":
        specs: list[dict[str, Any]] = []
        for tool in tools:
            spec = {"toolSpec": {"name": tool["name"], "inputSchema": {"json": tool.get("input_schema") or {"type": "object"}}}}
            if tool.get("description"):
                spec["toolSpec"]["description"] = tool["description"]
            specs.extend(_with_cache_point(tool, spec))
        request["toolConfig"] = {"tools": specs}
        kind = (tool_choice or {}).get("type")
        if kind in ("auto", "any"):
            request["toolConfig"]["toolChoice"] = {kind: {}}
        elif kind == "tool":
            request["toolConfig"]["toolChoice"] = {"tool": {"name": tool_choice["name"]}}
    if params:
        raise TypeError(f"cannot send to Bedrock Converse: {', '.join(sorted(params))}")
    return request


def _out_block(block: dict[str, Any]) -> dict[str, Any] | None:
    if "text" in block:
        return {"type": "text", "text": block["text"]}
    if "toolUse" in block:
        tool = block["toolUse"]
        return {"type": "tool_use", "id": tool["toolUseId"], "name": tool["name"], "input": tool.get("input") or {}}
    reasoning = block.get("reasoningContent") or {}
    if "reasoningText" in reasoning:
        text = reasoning["reasoningText"]
        return {"type": "thinking", "thinking": text.get("text", ""), "signature": text.get("signature", "")}
    if "redactedContent" in reasoning:
        return {"type": "redacted_thinking", "data": base64.b64encode(reasoning["redactedContent"]).decode()}
    return None


def _usage(usage: dict[str, Any] | None) -> dict[str, int]:
    usage = usage or {}
    return {"input_tokens": usage.get("inputTokens", 0), "output_tokens": usage.get("outputTokens", 0),
            "cache_read_input_tokens": usage.get("cacheReadInputTokens", 0), "cache_creation_input_tokens": usage.get("cacheWriteInputTokens", 0)}


def _message_id(response: dict[str, Any]) -> str:
    request_id = ((response.get("ResponseMetadata") or {}).get("RequestId")) or uuid.uuid4().hex
    return f"msg_bedrock_{request_id}"


def to_message(response: dict[str, Any], invoke_id: str) -> Any:
    """The anthropic SDK's `Message` for a Converse response."""
    from anthropic.types import Message

    content = [out for block in ((response.get("output") or {}).get("message") or {}).get("content") or [] if (out := _out_block(block))]
    return Message.model_validate({
        "id": _message_id(response), "type": "message", "role": "assistant", "model": answering_model(response) or invoke_id,
        "content": content, "stop_reason": STOP_REASONS.get(response.get("stopReason", ""), "end_turn"), "stop_sequence": None,
        "usage": _usage(response.get("usage")),
    })


class _Events:
    """Turns ConverseStream events into Anthropic's raw stream events, one Converse event at a time."""

    def __init__(self, invoke_id: str, message_id: str) -> None:
        self.invoke_id = invoke_id
        self.message_id = message_id
        self.started: set[int] = set()
        self.stop_reason = "end_turn"

    def translate(self, event: dict[str, Any]) -> list[Any]:
        from anthropic.types import (
            RawContentBlockDeltaEvent,
            RawContentBlockStartEvent,
            RawContentBlockStopEvent,
            RawMessageDeltaEvent,
            RawMessageStartEvent,
            RawMessageStopEvent,
        )

        out: list[Any] = []
        if "messageStart" in event:
            out.append(RawMessageStartEvent.model_validate({"type": "message_start", "message": {
                "id": self.message_id, "type": "message", "role": "assistant", "model": self.invoke_id, "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": _usage(None)}}))
        elif "contentBlockStart" in event:
            start = event["contentBlockStart"]
            index = start.get("contentBlockIndex", 0)
            tool = (start.get("start") or {}).get("toolUse")
            if tool:
                self.started.add(index)
                out.append(RawContentBlockStartEvent.model_validate({"type": "content_block_start", "index": index, "content_block": {
                    "type": "tool_use", "id": tool["toolUseId"], "name": tool["name"], "input": {}}}))
        elif "contentBlockDelta" in event:
            body = event["contentBlockDelta"]
            index, delta = body.get("contentBlockIndex", 0), body.get("delta") or {}
            reasoning = delta.get("reasoningContent") or {}
            if index not in self.started:
                self.started.add(index)
                block = {"type": "thinking", "thinking": "", "signature": ""} if reasoning else {"type": "text", "text": ""}
                out.append(RawContentBlockStartEvent.model_validate({"type": "content_block_start", "index": index, "content_block": block}))
            if "text" in delta:
                converted: dict[str, Any] = {"type": "text_delta", "text": delta["text"]}
            elif "toolUse" in delta:
                converted = {"type": "input_json_delta", "partial_json": delta["toolUse"].get("input", "")}
            elif "text" in reasoning:
                converted = {"type": "thinking_delta", "thinking": reasoning["text"]}
            elif "signature" in reasoning:
                converted = {"type": "signature_delta", "signature": reasoning["signature"]}
            else:
                return out
            out.append(RawContentBlockDeltaEvent.model_validate({"type": "content_block_delta", "index": index, "delta": converted}))
        elif "contentBlockStop" in event:
            index = event["contentBlockStop"].get("contentBlockIndex", 0)
            out.append(RawContentBlockStopEvent.model_validate({"type": "content_block_stop", "index": index}))
        elif "messageStop" in event:
            self.stop_reason = STOP_REASONS.get(event["messageStop"].get("stopReason", ""), "end_turn")
        elif "metadata" in event:
            delta = {"stop_reason": self.stop_reason, "stop_sequence": None}
            usage = _usage(event["metadata"].get("usage"))
            out.append(RawMessageDeltaEvent.model_validate({"type": "message_delta", "delta": delta, "usage": usage}))
            out.append(RawMessageStopEvent.model_validate({"type": "message_stop"}))
        return out


def to_message_events(events: Iterator[dict[str, Any]], invoke_id: str, response: dict[str, Any], tap: Any) -> Iterator[Any]:
    """Anthropic stream events for a ConverseStream; every Converse event is handed to `tap` first (usage reading)."""
    translator = _Events(invoke_id, _message_id(response))
    for event in events:
        tap(event)
        yield from translator.translate(event)


async def ato_message_events(events: AsyncIterator[dict[str, Any]], invoke_id: str, response: dict[str, Any], tap: Any) -> AsyncIterator[Any]:
    translator = _Events(invoke_id, _message_id(response))
    async for event in events:
        tap(event)
        for out in translator.translate(event):
            yield out


__all__ = ["ato_message_events", "family_is_anthropic", "to_converse", "to_message", "to_message_events"]
