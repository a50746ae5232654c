"""A local stand-in for Amazon Bedrock runtime's Converse API (POST /model/{modelId}/converse, and ConverseStream
POST /model/{modelId}/converse-stream in the AWS event-stream framing botocore parses) that enforces the per-model
quotas the way AWS documents its token counting.

Source: AWS, "How tokens are counted in Amazon Bedrock" (bedrock/latest/userguide/quotas-token-burndown.html) and
"Quotas for Amazon Bedrock" ("Token burndown rate for Anthropic Claude 4 models"); the Converse API reference
(TokenUsage, ThrottlingException, ConverseTrace.promptRouter) as botocore's bedrock-runtime model describes it.

Quotas are per invoked id: the `modelId` in the path (URL-decoded; an ARN counts by its last path segment), which is
a foundation model id (on-demand quotas) or an inference profile id such as
``us.anthropic.claude-sonnet-4-5-20250929-v1:0`` (cross-Region quotas). Configure each id the key may call; an id
not configured is answered ValidationException "The provided model identifier is invalid.".

Counting, per quota (each optional): requests per minute (RPM), tokens per minute (TPM), tokens per day (TPD):

- RPM: one per call.
- TPM/TPD, at the start of the call: "total input tokens" (uncached input + cache reads + cache writes) +
  ``inferenceConfig.maxTokens``; when maxTokens is absent, the model's maximum output, as AWS says ("If max_tokens is
  not set, it defaults to the model's maximum output capacity"): `default_max_tokens`, else an assumed table (Claude
  Opus 4/4.1: 32,000; other Claude 4+ and Claude 3.7 Sonnet: 64,000; Claude 3.5: 8,192; anything else: 4,096).
- At the end of the call the charge becomes ``inputTokens + cacheWriteInputTokens + outputTokens x burndown rate``:
  cache reads are released. The burndown rate is 5 for the Claude 4 generation and later (``anthropic.claude-
  <family>-<major>...`` with major >= 4: Opus 4, Opus 4.1, Sonnet 4, Sonnet 4.5, Haiku 4.5, Opus 4.5, ...), 1 for
  every other model; `burndown_rate` overrides it per id.
- Window: the charges made in the last 60 seconds (TPD: 86,400); a charge corrected at the end keeps its start
  time. AWS does not publish the algorithm; a rolling window is the plain reading of "per minute".
- A call is admitted only if every quota has room; otherwise HTTP 429, header ``x-amzn-ErrorType:
  ThrottlingException`` and ``{"message": "Too many tokens, please wait before trying again."}`` ("Too many requests,
  ..." for RPM, "Too many tokens per day, ..." for TPD), which botocore raises as ClientError ThrottlingException. A
  call that could never fit (input + maxTokens above the TPM quota) is throttled the same way. A throttled call counts
  nothing. Bedrock sends no rate-limit headers.

Token counting: each content block counts ``ceil(characters / 4)`` (text blocks: their text; others: their JSON) in the
order tool definitions, system, messages. Prompt caching: a ``{"cachePoint": {"type": "default"}}`` block (optional
``"ttl": "1h"``) ends a cacheable prefix (the blocks before it). The longest such prefix seen before for the id
(5-minute TTL, refreshed on each hit) is ``cacheReadInputTokens``; from there to the last cache point is
``cacheWriteInputTokens``; prefixes under `min_cacheable_tokens` (default 1024) are not cached. ``inputTokens`` is the
uncached remainder; ``totalTokens = inputTokens + outputTokens + cacheReadInputTokens + cacheWriteInputTokens``.

Errors: `profile_only=True` on a foundation model id answers ValidationException "Invocation of model ID ... with
on-demand throughput isn't supported. Retry your request with the ID or ARN of an inference profile that contains this
model." (seed 002); `reachable=False` answers AccessDeniedException (403) "You don't have access to the model with the
specified model ID."; `fail_status` answers 400 ValidationException, 403 AccessDeniedException, 404
ResourceNotFoundException, 408 ModelTimeoutException, 424 ModelErrorException, 429 ThrottlingException, 500
InternalServerException or 503 ServiceUnavailableException.

Another model answering (`answered_by`): the response carries ``trace.promptRouter.invokedModelId`` naming it (as a
prompt router reports the model it invoked). The call is admitted against the invoked id; if the answering id is
configured here (another pool), the settled charge moves to its quotas.

``Call.counted`` keys: requests, tokens_at_admission, tokens (the settled charge).
"""

from __future__ import annotations

import json
import re
import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from tests.standins.base import (
    CACHE_TTL,
    DAY,
    Breakpoint,
    Call,
    Charge,
    ModelBehaviour,
    PromptCache,
    Reply,
    Request,
    RollingWindow,
    StandIn,
    count_tokens,
    filler_text,
    fingerprint,
    read_markers,
    tool_call,
)

ERROR_TYPES = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException", 408: "ModelTimeoutException",
               424: "ModelErrorException", 429: "ThrottlingException", 500: "InternalServerException", 503: "ServiceUnavailableException"}
ERROR_MESSAGES = {404: "Model not found.", 408: "Model has timed out in processing the request.", 424: "The model returned an error.",
                  429: "Too many requests, please wait before trying again.", 500: "The server encountered an internal error.",
                  503: "Too many connections, please wait before trying again."}
GEOGRAPHIES = {"us", "eu", "apac", "global", "jp", "au", "ca", "us-gov"}
CLAUDE = re.compile(r"anthropic\.claude-([a-z]+)-(\d+)(?:-(\d{1,2}))?(?=-|$)")
CLAUDE_3 = re.compile(r"anthropic\.claude-3-(\d)")
DELTA_TOKENS = 16


def foundation_id(model_id: str) -> str:
    """The foundation model id inside an inference profile id (``us.anthropic.x`` -> ``anthropic.x``)."""
    geography, _, rest = model_id.partition(".")
    return rest if geography in GEOGRAPHIES and "." in rest else model_id


def default_burndown_rate(model_id: str) -> int:
    """5 for Claude 4 and later models (AWS: "Token burndown rate for Anthropic Claude 4 models"), else 1."""
    match = CLAUDE.match(foundation_id(model_id))
    return 5 if match and int(match.group(2)) >= 4 else 1


def default_max_output(model_id: str) -> int:
    """What Bedrock is assumed to charge for output when a request sets no maxTokens (the model's maximum output)."""
    base = foundation_id(model_id)
    match = CLAUDE.match(base)
    if match and int(match.group(2)) >= 4:
        return 32_000 if match.group(1) == "opus" and int(match.group(2)) == 4 and (match.group(3) or "0") in ("0", "1") else 64_000
    claude_3 = CLAUDE_3.match(base)
    if claude_3:
        return {"7": 64_000, "5": 8_192}.get(claude_3.group(1), 4_096)
    return 4_096


@dataclass
class BedrockModel(ModelBehaviour):
    """A Bedrock model id's quotas (None: not limited) and behaviour."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_day: int | None = None
    burndown_rate: int | None = None
    default_max_tokens: int | None = None
    profile_only: bool = False


@dataclass
class BedrockLimits:
    requests: RollingWindow | None
    tokens: RollingWindow | None
    tokens_per_day: RollingWindow | None


def event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (lengths + CRC), string headers, payload, message CRC."""
    encoded = b"".join(struct.pack("B", len(k.encode())) + k.encode() + b"\x07" + struct.pack(">H", len(v.encode())) + v.encode()
                       for k, v in headers.items())
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(name: str, data: dict[str, Any]) -> bytes:
    return event_message({":event-type": name, ":content-type": "application/json", ":message-type": "event"}, json.dumps(data).encode())


class BedrockStandIn(StandIn):
    """Bedrock runtime Converse/ConverseStream stand-in; see the module docstring for what it counts."""

    provider = "bedrock"
    model_class = BedrockModel

    def __init__(self, models: dict[str, Any] | None = None, **options: Any) -> None:
        super().__init__(models, **options)
        self.cache = PromptCache()

    def new_limits(self, config: BedrockModel, now: float) -> BedrockLimits:
        return BedrockLimits(RollingWindow(config.requests_per_minute) if config.requests_per_minute else None,
                             RollingWindow(config.tokens_per_minute) if config.tokens_per_minute else None,
                             RollingWindow(config.tokens_per_day, DAY) if config.tokens_per_day else None)

    def _reset_caches(self) -> None:
        self.cache = PromptCache()

    def burndown_rate(self, model: str) -> int:
        config = self.models.get(model)
        return config.burndown_rate if config and config.burndown_rate else default_burndown_rate(model)

    # HTTP

    def route(self, request: Request, reply: Reply) -> None:
        parts = request.path.split("/")
        if request.method == "POST" and len(parts) == 4 and parts[1] == "model" and parts[3] in ("converse", "converse-stream"):
            model = unquote(parts[2])
            if model.startswith("arn:"):
                model = model.rsplit("/", 1)[-1]
            self._converse(model, request, reply, stream=parts[3] == "converse-stream")
        else:
            self._error(reply, 404, f"Unknown operation {request.method} {request.path}", "UnknownOperationException")

    def bad_request(self, request: Request, reply: Reply, message: str) -> None:
        self._error(reply, 400, message)

    def _error(self, reply: Reply, status: int, message: str, kind: str | None = None) -> None:
        kind = kind or ERROR_TYPES.get(status, "InternalServerException")
        reply.json(status, {"message": message}, {"x-amzn-ErrorType": kind, "x-amzn-RequestId": str(uuid.uuid4())})

    # The call

    def _converse(self, model: str, request: Request, reply: Reply, stream: bool) -> None:
        body = request.body if isinstance(request.body, dict) else {}
        inference = body.get("inferenceConfig") if isinstance(body.get("inferenceConfig"), dict) else {}
        config = self.models.get(model)
        max_tokens = inference.get("maxTokens") if isinstance(inference.get("maxTokens"), int) else None
        if max_tokens is None:
            max_tokens = config.default_max_tokens if config and config.default_max_tokens else default_max_output(model)
        call = Call(provider=self.provider, model=model, at=self.clock(), stream=stream, max_tokens=max_tokens)

        def refuse(status: int, message: str) -> None:
            call.status, call.error = status, ERROR_TYPES.get(status, "InternalServerException")
            self.record(call)
            self._error(reply, status, message)

        if config is None:
            refuse(400, "The provided model identifier is invalid.")
            return
        if not config.reachable:
            refuse(403, "You don't have access to the model with the specified model ID.")
            return
        if config.profile_only:
            refuse(400, f"Invocation of model ID {model} with on-demand throughput isn’t supported. Retry your request with the ID or ARN "
                        "of an inference profile that contains this model.")
            return
        if config.fail_status:
            refuse(config.fail_status, ERROR_MESSAGES.get(config.fail_status, f"stand-in error {config.fail_status}"))
            return
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            refuse(400, "A conversation must start with a user message. Try again with a conversation that starts with a user message.")
            return

        breakpoints, total, markers = self._count(body)
        output, capped = self.output_for(config, max_tokens, markers)
        burndown = self.burndown_rate(model)
        with self.lock:
            now = self.clock()
            call.at = now
            limits = self.limits(model)
            scope = self.pool(model) + "|"
            plan = self.cache.plan(scope, breakpoints, now, config.min_cacheable_tokens)
            read = min(plan.read, total)
            write = min(plan.write, total - read)
            uncached = total - read - write
            admission = uncached + read + write + max_tokens
            needs = [("requests", limits.requests, 1, "Too many requests, please wait before trying again."),
                     ("tokens", limits.tokens, admission, "Too many tokens, please wait before trying again."),
                     ("tokens_per_day", limits.tokens_per_day, admission, "Too many tokens per day, please wait before trying again.")]
            blocked = [(name, message) for name, window, amount, message in needs if window and window.used(now) + amount > window.limit]
            if blocked:
                call.status, call.throttled, call.limit, call.error = 429, True, blocked[0][0], "ThrottlingException"
                self.record(call)
                self._error(reply, 429, blocked[0][1])
                return
            charges: list[tuple[RollingWindow, Charge]] = []
            for name, window, amount, _ in needs:
                if window:
                    charge = window.add(amount, now)
                    if name != "requests":
                        charges.append((window, charge))
            self.cache.commit(scope, plan, now)

        settled = uncached + write + output * burndown
        call.answered_by = config.answered_by
        call.input_tokens, call.output_tokens = uncached, output
        call.cache_read_input_tokens, call.cache_write_input_tokens = read, write
        usage = {"inputTokens": uncached, "outputTokens": output, "totalTokens": uncached + output + read + write,
                 "cacheReadInputTokens": read, "cacheWriteInputTokens": write}
        trace = {"trace": {"promptRouter": {"invokedModelId": config.answered_by}}} if config.answered_by else {}
        stop_reason = "max_tokens" if capped else "end_turn"
        text = filler_text(output)
        names = [(tool.get("toolSpec") or {}).get("name", "") for tool in (body.get("toolConfig") or {}).get("tools") or []
                 if isinstance(tool, dict) and "toolSpec" in tool]
        wanted = tool_call(names, markers)
        tool_use = None
        if wanted and not capped:
            stop_reason = "tool_use"
            tool_use = {"toolUseId": f"tooluse_standin{self.next_id()}", "name": wanted[0], "input": wanted[1]}

        def settle() -> None:
            with self.lock:
                now = self.clock()
                other = self.models.get(config.answered_by) if config.answered_by else None
                if other is not None and self.pool(config.answered_by) != self.pool(model):
                    for _, charge in charges:
                        charge.amount = 0
                    moved = self.limits(config.answered_by)
                    for window in (moved.tokens, moved.tokens_per_day):
                        if window:
                            window.add(settled, now)
                else:
                    for _, charge in charges:
                        charge.amount = settled
                call.counted = {"requests": 1, "tokens_at_admission": admission, "tokens": settled}
                self.record(call)

        request_id = str(uuid.uuid4())
        if not stream:
            self.hold()
            settle()
            reply.json(200, {
                "output": {"message": {"role": "assistant", "content": ([{"text": text}] if output else [])
                                                                       + ([{"toolUse": tool_use}] if tool_use else [])}},
                "stopReason": stop_reason, "usage": usage, "metrics": {"latencyMs": 1}, **trace,
            }, {"x-amzn-RequestId": request_id})
            return

        reply.start(200, "application/vnd.amazon.eventstream", {"x-amzn-RequestId": request_id})
        reply.write(event("messageStart", {"role": "assistant"}))
        self.hold()
        step = DELTA_TOKENS * 4
        for start in range(0, len(text), step):
            reply.write(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text[start:start + step]}}))
        reply.write(event("contentBlockStop", {"contentBlockIndex": 0}))
        if tool_use:
            start = {"toolUse": {"toolUseId": tool_use["toolUseId"], "name": tool_use["name"]}}
            reply.write(event("contentBlockStart", {"contentBlockIndex": 1, "start": start}))
            reply.write(event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": json.dumps(tool_use["input"])}}}))
            reply.write(event("contentBlockStop", {"contentBlockIndex": 1}))
        reply.write(event("messageStop", {"stopReason": stop_reason}))
        settle()
        reply.write(event("metadata", {"usage": usage, "metrics": {"latencyMs": 1}, **trace}))
        reply.end()

    @staticmethod
    def _count(body: dict[str, Any]) -> tuple[list[Breakpoint], int, dict[str, int]]:
        """(cache breakpoints, total input tokens, markers of the last user message)."""
        entries: list[tuple[str, Any]] = []
        tool_config = body.get("toolConfig") if isinstance(body.get("toolConfig"), dict) else {}
        entries.extend(("tool", block) for block in tool_config.get("tools") or [])
        entries.extend(("system", block) for block in body.get("system") or [])
        markers: dict[str, int] = {}
        for message in body.get("messages") or []:
            if not isinstance(message, dict):
                continue
            blocks = [block for block in message.get("content") or [] if isinstance(block, dict)]
            entries.extend((message.get("role", ""), block) for block in blocks)
            if message.get("role") == "user":
                markers = read_markers(" ".join(block["text"] for block in blocks if isinstance(block.get("text"), str)))
        identities: list[Any] = []
        breakpoints: list[Breakpoint] = []
        total = 0
        for role, block in entries:
            if not isinstance(block, dict):
                continue
            if "cachePoint" in block:
                point = block["cachePoint"] if isinstance(block["cachePoint"], dict) else {}
                breakpoints.append(Breakpoint(fingerprint(identities), total, CACHE_TTL.get(str(point.get("ttl", "5m")), CACHE_TTL["5m"])))
                continue
            identities.append([role, block])
            total += count_tokens(block["text"] if isinstance(block.get("text"), str) else json.dumps(block, sort_keys=True))
        if "input_tokens" in markers:
            total = markers["input_tokens"]
        return breakpoints, total, markers


__all__ = ["BedrockModel", "BedrockStandIn", "default_burndown_rate", "default_max_output", "event_message", "foundation_id"]
