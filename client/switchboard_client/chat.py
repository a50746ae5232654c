"""`sb.chat(...)`: one provider-neutral call, in the OpenAI chat shape that LiteLLM's users know, sent to whichever
model Switchboard chose with that provider's official SDK (Anthropic Messages, OpenAI chat completions and compatible
vendors, Bedrock Converse) and answered as one `ChatResponse`.

The request:
- `messages`: `{"role": "system" | "user" | "assistant" | "tool", "content": ...}`; content is text or a list of parts
  `{"type": "text", "text": ...}` and `{"type": "image_url", "image_url": {"url": "data:image/png;base64,..." or
  "https://..."}}` (Bedrock takes data URLs only); an assistant message may carry `tool_calls`
  (`[{"id", "type": "function", "function": {"name", "arguments": "<JSON>"}}]`), a tool message answers one with its
  `tool_call_id`. `ChatResponse.message` is the assistant message to append to continue the conversation.
- `system` (text; system messages are joined to it), `max_tokens`, `temperature`, `top_p`, `stop` (text or list),
  `tools` (`{"type": "function", "function": {"name", "description", "parameters": <JSON schema>}}`, or the inner
  function object alone) and `tool_choice` (`"auto"`, `"required"`, `"none"`, or `{"type": "function", "function":
  {"name": ...}}`; Bedrock has no "none": the tools are sent without a choice).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from switchboard_client.api import Decision
from switchboard_client.usage import Observation, Usage, answering_model

IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
STOP_REASONS = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "stop": "stop", "max_tokens": "length", "length": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls", "tool_calls": "tool_calls", "function_call": "tool_calls",
    "refusal": "content_filter", "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
    "content_filter": "content_filter",
}


@dataclass(frozen=True)
class ToolCall:
    """A tool the model asked to call: its `id` (send it back as the tool message's `tool_call_id`), `name` and
    `arguments` (parsed from the JSON the model wrote)."""

    id: str
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments)


@dataclass
class ChatResponse:
    """One answer of `sb.chat`, whoever gave it.

    `text`: the text blocks joined; `tool_calls`; `stop_reason` in OpenAI's words (`stop`, `length`, `tool_calls`,
    `content_filter`); `usage`: what was reported to Switchboard (input_tokens is the uncached input, as for every
    helper); `model`: the provider's id of the model that answered, `model_key` its Switchboard key, `provider` and
    `kind` the provider's slug and API; `raw`: the SDK's own response (anthropic `Message`, openai `ChatCompletion`,
    boto3's Converse dict); `switchboard_decision` and `switchboard_report` as on every helper's answer."""

    text: str
    tool_calls: list[ToolCall]
    stop_reason: str
    usage: Usage
    model: str
    model_key: str
    provider: str
    kind: str
    raw: Any
    switchboard_decision: Decision | None = None
    switchboard_report: dict[str, Any] | None = None
    fail_open: bool = False

    @property
    def message(self) -> dict[str, Any]:
        """The assistant message to append to `messages` for the next turn."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [{"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments_json}}
                                     for call in self.tool_calls]
        return message


@dataclass(frozen=True)
class ChatChunk:
    """One event of a chat stream: the `text` it adds ("" for events that add none) and the SDK's own event (`raw`)."""

    text: str
    raw: Any


@dataclass
class ChatRequest:
    messages: list[Mapping[str, Any]]
    max_tokens: int
    system: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None

    @classmethod
    def build(cls, *, messages: list[Mapping[str, Any]], max_tokens: int, system: str | None, temperature: float | None,
              top_p: float | None, stop: str | list[str] | None, tools: list[Mapping[str, Any]] | None, tool_choice: Any) -> ChatRequest:
        systems = [system] if system else []
        rest: list[Mapping[str, Any]] = []
        for message in messages:
            if message.get("role") in ("system", "developer"):
                systems.append(_plain_text(message.get("content")))
            else:
                rest.append(message)
        return cls(messages=rest, max_tokens=max_tokens, system="\n\n".join(systems) or None, temperature=temperature, top_p=top_p,
                   stop=[stop] if isinstance(stop, str) else list(stop or []), tools=[_function(tool) for tool in tools or []],
                   tool_choice=tool_choice)

    # To each API

    def anthropic(self) -> dict[str, Any]:
        params: dict[str, Any] = {"max_tokens": self.max_tokens, "messages": _merged([_to_anthropic(m) for m in self.messages])}
        if self.system:
            params["system"] = self.system
        # The anthropic SDK's create() no longer names temperature and top_p: they go in the body as they are.
        sampling: dict[str, Any] = {}
        _optional(sampling, temperature=self.temperature, top_p=self.top_p)
        if sampling:
            params["extra_body"] = sampling
        if self.stop:
            params["stop_sequences"] = self.stop
        if self.tools:
            params["tools"] = [{"name": tool["name"], "description": tool.get("description") or "",
                                "input_schema": tool.get("parameters") or {"type": "object", "properties": {}}} for tool in self.tools]
            choice = _choice_name(self.tool_choice)
            if choice is not None:
                params["tool_choice"] = {"type": "tool", "name": choice}
            elif self.tool_choice in ("auto", "required", "none"):
                params["tool_choice"] = {"type": {"auto": "auto", "required": "any", "none": "none"}[self.tool_choice]}
        return params

    def openai(self, kind: str) -> dict[str, Any]:
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [dict(m) for m in self.messages]
        # OpenAI's newer models take only max_completion_tokens; compatible vendors mostly know max_tokens.
        params: dict[str, Any] = {"messages": messages, ("max_completion_tokens" if kind == "openai" else "max_tokens"): self.max_tokens}
        _optional(params, temperature=self.temperature, top_p=self.top_p)
        if self.stop:
            params["stop"] = self.stop
        if self.tools:
            params["tools"] = [{"type": "function", "function": tool} for tool in self.tools]
            if self.tool_choice is not None:
                params["tool_choice"] = self.tool_choice
        return params

    def converse(self) -> dict[str, Any]:
        inference: dict[str, Any] = {"maxTokens": self.max_tokens}
        _optional(inference, temperature=self.temperature, topP=self.top_p)
        if self.stop:
            inference["stopSequences"] = self.stop
        params: dict[str, Any] = {"messages": _merged([_to_converse(m) for m in self.messages]), "inferenceConfig": inference}
        if self.system:
            params["system"] = [{"text": self.system}]
        if self.tools:
            specs = [{"toolSpec": {"name": tool["name"], "inputSchema": {"json": tool.get("parameters") or {"type": "object", "properties": {}}},
                                   **({"description": tool["description"]} if tool.get("description") else {})}} for tool in self.tools]
            params["toolConfig"] = {"tools": specs}
            choice = _choice_name(self.tool_choice)
            if choice is not None:
                params["toolConfig"]["toolChoice"] = {"tool": {"name": choice}}
            elif self.tool_choice in ("auto", "required"):
                params["toolConfig"]["toolChoice"] = {"auto": {}} if self.tool_choice == "auto" else {"any": {}}
        return params

    def estimate_parts(self) -> tuple[Any, ...]:
        return (self.system, self.messages, self.tools)


def _optional(params: dict[str, Any], **values: Any) -> None:
    params.update({name: value for name, value in values.items() if value is not None})


def _function(tool: Mapping[str, Any]) -> dict[str, Any]:
    function = tool.get("function") if tool.get("type") == "function" else tool
    if not isinstance(function, Mapping) or not function.get("name"):
        raise TypeError(f"a tool is a JSON-schema function with a name, not {tool!r}")
    return dict(function)


def _choice_name(choice: Any) -> str | None:
    if isinstance(choice, Mapping):
        return str((choice.get("function") or {}).get("name") or choice.get("name"))
    return None


def _plain_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, Mapping))


def _parts(content: Any) -> list[Mapping[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content)


def _image(part: Mapping[str, Any]) -> tuple[str | None, str, bytes | None]:
    """An image_url part as (media type, url, bytes): bytes and media type for a data URL, the URL alone otherwise."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str):
        raise TypeError(f"an image_url part needs a URL, not {part!r}")
    if not url.startswith("data:"):
        return None, url, None
    header, _, data = url.partition(",")
    media_type = header[5:].split(";")[0] or "image/png"
    try:
        return media_type, url, base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TypeError("an image data URL must be base64") from exc


def _arguments(call: Mapping[str, Any]) -> dict[str, Any]:
    arguments = (call.get("function") or {}).get("arguments")
    if isinstance(arguments, Mapping):
        return dict(arguments)
    return json.loads(arguments) if arguments else {}


def _to_anthropic(message: Mapping[str, Any]) -> dict[str, Any]:
    role = message.get("role")
    if role == "tool":
        content = message.get("content")
        result = content if isinstance(content, str) else [_anthropic_part(part) for part in _parts(content)]
        return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": result}]}
    blocks = [_anthropic_part(part) for part in _parts(message.get("content"))]
    for call in message.get("tool_calls") or []:
        blocks.append({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": _arguments(call)})
    return {"role": "assistant" if role == "assistant" else "user", "content": blocks}


def _anthropic_part(part: Mapping[str, Any]) -> dict[str, Any]:
    if part.get("type") == "text":
        return {"type": "text", "text": part["text"]}
    if part.get("type") == "image_url":
        media_type, url, data = _image(part)
        if data is None:
            return {"type": "image", "source": {"type": "url", "url": url}}
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": base64.b64encode(data).decode()}}
    raise TypeError(f"content part type {part.get('type')!r} is not one sb.chat sends (text, image_url)")


def _to_converse(message: Mapping[str, Any]) -> dict[str, Any]:
    role = message.get("role")
    if role == "tool":
        content = message.get("content")
        parts = [{"text": content}] if isinstance(content, str) else [_converse_part(part) for part in _parts(content)]
        return {"role": "user", "content": [{"toolResult": {"toolUseId": message["tool_call_id"], "content": parts or [{"text": ""}]}}]}
    blocks = [_converse_part(part) for part in _parts(message.get("content"))]
    for call in message.get("tool_calls") or []:
        blocks.append({"toolUse": {"toolUseId": call["id"], "name": call["function"]["name"], "input": _arguments(call)}})
    return {"role": "assistant" if role == "assistant" else "user", "content": blocks}


def _converse_part(part: Mapping[str, Any]) -> dict[str, Any]:
    if part.get("type") == "text":
        return {"text": part["text"]}
    if part.get("type") == "image_url":
        media_type, url, data = _image(part)
        if data is None or media_type not in IMAGE_FORMATS:
            raise TypeError("Bedrock Converse takes images as base64 data URLs of png, jpeg, gif or webp, not a link")
        return {"image": {"format": IMAGE_FORMATS[media_type], "source": {"bytes": data}}}
    raise TypeError(f"content part type {part.get('type')!r} is not one sb.chat sends (text, image_url)")


def _merged(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive messages of one role joined (tool results answered together, a user turn after them): the
    Anthropic and Converse APIs take turns that alternate."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        if merged and merged[-1]["role"] == message["role"]:
            merged[-1] = {"role": message["role"], "content": merged[-1]["content"] + message["content"]}
        else:
            merged.append(message)
    return merged


# From each API

def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def response_fields(kind: str, raw: Any) -> tuple[str, list[ToolCall], str, str | None]:
    """(text, tool calls, stop reason, the provider's model id) of an SDK's answer."""
    if kind == "anthropic":
        text = "".join(block.text for block in raw.content if block.type == "text")
        calls = [ToolCall(block.id, block.name, dict(block.input or {})) for block in raw.content if block.type == "tool_use"]
        return text, calls, STOP_REASONS.get(raw.stop_reason or "", "stop"), raw.model
    if kind == "bedrock":
        content = ((raw.get("output") or {}).get("message") or {}).get("content") or []
        text = "".join(block["text"] for block in content if "text" in block)
        calls = [ToolCall(block["toolUse"]["toolUseId"], block["toolUse"]["name"], dict(block["toolUse"].get("input") or {}))
                 for block in content if "toolUse" in block]
        return text, calls, STOP_REASONS.get(raw.get("stopReason") or "", "stop"), answering_model(raw)
    choice = raw.choices[0] if raw.choices else None
    message = choice.message if choice else None
    text = (message.content or "") if message else ""
    tool_calls = (message.tool_calls or []) if message else []
    calls = [ToolCall(call.id, call.function.name, json.loads(call.function.arguments or "{}")) for call in tool_calls]
    return text, calls, STOP_REASONS.get((choice.finish_reason if choice else "") or "", "stop"), raw.model


def chat_response(decision: Decision, raw: Any, observation: Observation, report: dict[str, Any] | None, fail_open: bool = False) -> ChatResponse:
    """The ChatResponse of an SDK's answer to the decision's model, with what was reported for it."""
    model = decision.model
    kind = "bedrock" if model.kind == "bedrock" else "anthropic" if model.kind == "anthropic" else "openai"
    text, calls, stop_reason, answered = response_fields(kind, raw)
    reported = (report or {}).get("model")  # the usage event's model, or the key a queued report names
    key = (reported.get("key") if isinstance(reported, Mapping) else reported) or model.key
    return ChatResponse(text=text, tool_calls=calls, stop_reason=stop_reason, usage=observation.usage, model=answered or model.invoke_id,
                        model_key=key, provider=model.provider, kind=model.kind, raw=raw, switchboard_decision=None if fail_open else decision,
                        switchboard_report=report, fail_open=fail_open)


class _ChatStreamBase:
    def __init__(self, stream: Any, decision: Decision, fail_open: bool) -> None:
        self.stream = stream
        """The helper's reporting stream of the SDK's own events."""
        self.switchboard_decision = None if fail_open else decision
        self._decision = decision
        self._fail_open = fail_open

    @property
    def switchboard_report(self) -> dict[str, Any] | None:
        return self.stream.switchboard_report

    @property
    def done(self) -> bool:
        return bool(self.stream.done)

    def on_end(self, callback: Any) -> None:
        """See `ReportingStream.on_end` (the callback gets the underlying reporting stream)."""
        self.stream.on_end(callback)

    def _chunk(self, event: Any) -> ChatChunk:
        return ChatChunk(self.stream._text(event) or "", event)

    def _response(self, raw: Any) -> ChatResponse:
        return chat_response(self._decision, raw, self.stream.observation, self.stream.switchboard_report, self._fail_open)


class ChatStream(_ChatStreamBase):
    """`sb.chat(..., stream=True)`: iterate it for `ChatChunk`s, or read `text_stream`; `get_final_response()` reads
    the rest and returns the `ChatResponse` (tool calls included). It reports when it ends, however it ends."""

    def __iter__(self) -> Iterator[ChatChunk]:
        for event in self.stream:
            yield self._chunk(event)

    @property
    def text_stream(self) -> Iterator[str]:
        return self.stream.text_stream

    def get_final_response(self) -> ChatResponse:
        return self._response(self.stream.get_final_message())

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.stream.__exit__(exc_type, exc, tb)


class AsyncChatStream(_ChatStreamBase):
    """The async `ChatStream`: `async for chunk in stream`, `stream.text_stream`, `await stream.get_final_response()`."""

    async def __aiter__(self) -> AsyncIterator[ChatChunk]:
        async for event in self.stream:
            yield self._chunk(event)

    @property
    def text_stream(self) -> AsyncIterator[str]:
        return self.stream.text_stream

    async def get_final_response(self) -> ChatResponse:
        return self._response(await self.stream.get_final_message())

    async def close(self) -> None:
        await self.stream.close()

    aclose = close

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        await self.stream.__aexit__(exc_type, exc, tb)


__all__ = ["AsyncChatStream", "ChatChunk", "ChatRequest", "ChatResponse", "ChatStream", "ToolCall", "chat_response"]
