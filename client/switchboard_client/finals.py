"""The final answer of a stream, built from its events as the SDKs build it: anthropic's own event accumulator (the
one its `MessageStream` uses), openai's `ChatCompletionStreamState`, and for boto3's ConverseStream (which has none) a
Converse response dict. Each collector also names the text an event carries, for `text_stream`."""

from __future__ import annotations

import json
from typing import Any


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


class MessageCollector:
    """Anthropic raw stream events -> the `Message` (anthropic's `accumulate_event`)."""

    def __init__(self) -> None:
        self.snapshot: Any = None
        self.json_buffers: dict[int, bytes] = {}

    def feed(self, event: Any) -> None:
        from anthropic.lib.streaming._messages import accumulate_event

        self.snapshot = accumulate_event(event=event, current_snapshot=self.snapshot, json_bufs=self.json_buffers)

    def final(self) -> Any:
        if self.snapshot is None:
            raise RuntimeError("the stream ended before its message_start event: there is no message")
        return self.snapshot

    @staticmethod
    def text(event: Any) -> str | None:
        if _get(event, "type") == "content_block_delta":
            delta = _get(event, "delta")
            if _get(delta, "type") == "text_delta":
                return _get(delta, "text")
        return None


class CompletionCollector:
    """OpenAI chat completion chunks -> the `ChatCompletion` (openai's `ChatCompletionStreamState`)."""

    def __init__(self) -> None:
        from openai.lib.streaming.chat import ChatCompletionStreamState

        self.state = ChatCompletionStreamState()
        self.fed = False

    def feed(self, chunk: Any) -> None:
        list(self.state.handle_chunk(chunk))
        self.fed = True

    def final(self) -> Any:
        if not self.fed:
            raise RuntimeError("the stream ended before its first chunk: there is no completion")
        return self.state.get_final_completion()

    @staticmethod
    def text(chunk: Any) -> str | None:
        choices = _get(chunk, "choices") or []
        return _get(_get(choices[0], "delta"), "content") if choices else None


class ConverseCollector:
    """ConverseStream events -> a Converse response dict (`output.message`, `stopReason`, `usage`, `metrics`, `trace`)."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}
        self.tool_inputs: dict[int, str] = {}
        self.response: dict[str, Any] = {"output": {"message": {"role": "assistant", "content": []}}, "stopReason": None}

    def feed(self, event: Any) -> None:
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            tool = (start.get("start") or {}).get("toolUse")
            if tool:
                self.blocks[start.get("contentBlockIndex", 0)] = {"toolUse": {"toolUseId": tool["toolUseId"], "name": tool["name"], "input": {}}}
        elif "contentBlockDelta" in event:
            body = event["contentBlockDelta"]
            index, delta = body.get("contentBlockIndex", 0), body.get("delta") or {}
            if "text" in delta:
                block = self.blocks.setdefault(index, {"text": ""})
                block["text"] = block.get("text", "") + delta["text"]
            elif "toolUse" in delta:
                self.tool_inputs[index] = self.tool_inputs.get(index, "") + (delta["toolUse"].get("input") or "")
            elif "reasoningContent" in delta:
                reasoning = self.blocks.setdefault(index, {"reasoningContent": {"reasoningText": {"text": ""}}})
                text = reasoning["reasoningContent"].setdefault("reasoningText", {"text": ""})
                text["text"] = text.get("text", "") + delta["reasoningContent"].get("text", "")
                if "signature" in delta["reasoningContent"]:
                    text["signature"] = delta["reasoningContent"]["signature"]
        elif "contentBlockStop" in event:
            index = event["contentBlockStop"].get("contentBlockIndex", 0)
            if index in self.tool_inputs and index in self.blocks:
                self.blocks[index]["toolUse"]["input"] = json.loads(self.tool_inputs.pop(index) or "{}")
        elif "messageStop" in event:
            self.response["stopReason"] = event["messageStop"].get("stopReason")
        elif "metadata" in event:
            self.response.update({name: value for name, value in event["metadata"].items() if name in ("usage", "metrics", "trace")})

    def final(self) -> dict[str, Any]:
        self.response["output"]["message"]["content"] = [self.blocks[index] for index in sorted(self.blocks)]
        return self.response

    @staticmethod
    def text(event: Any) -> str | None:
        return ((event.get("contentBlockDelta") or {}).get("delta") or {}).get("text") if isinstance(event, dict) else None


__all__ = ["CompletionCollector", "ConverseCollector", "MessageCollector"]
