"""A local stand-in for Anthropic's Messages API (POST /v1/messages, streaming too; GET /v1/models) that enforces the
rate limits the way Anthropic documents them.

Source: Anthropic, "Rate limits" (docs.anthropic.com/en/api/rate-limits, now docs.claude.com) and "Prompt caching".

Counting, per model (or per `pool`: Anthropic limits per model class, so models naming one pool share limits):

- Algorithm: "token bucket": each limit is a bucket of `limit` units "continuously replenished up to your maximum
  limit" at limit/60 per second (``TokenBucket``).
- Requests per minute (RPM): one per admitted call.
- Input tokens per minute (ITPM): ``input_tokens + cache_creation_input_tokens``, charged at admission; cache reads
  (``cache_read_input_tokens``) do not count ("cache-aware ITPM"). ``usage.input_tokens`` is the uncached remainder.
- Output tokens per minute (OTPM): "estimated based on max_tokens at the beginning of each request and adjusted at
  the end of the request to reflect the actual number of output tokens used": `max_tokens` is taken at admission and
  `max_tokens - output_tokens` given back when the call ends (a stream: after its last delta).
- A call is admitted only if every bucket holds what it needs; otherwise HTTP 429 with ``retry-after`` (whole
  seconds until it would fit; 60 when it can never fit, e.g. max_tokens above the OTPM limit) and
  ``{"type": "error", "error": {"type": "rate_limit_error", "message": ...}}``. A throttled call counts nothing
  (the docs do not say it does).
- Headers on every /v1/messages answer: ``anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,
  remaining,reset}`` for each configured limit, and ``anthropic-ratelimit-tokens-*`` for the most restrictive of the
  two token limits (the lower remaining share). Token "remaining" values are "rounded to the nearest thousand" as
  documented (``round_token_headers=False`` gives exact values); resets are RFC 3339 times when the bucket is full
  again. A stream's headers show the state after admission; a plain answer's the state after the call settled.
  ``request-id`` on every answer.

Token counting: every content block counts ``ceil(characters / 4)`` (text blocks: their text; any other block: its
JSON without ``cache_control``), in the order tools, system, messages; the total is the call's input. The marker
``[[input_tokens=N]]`` replaces the total; ``[[output_tokens=N]]`` sets the output (see base).

Prompt caching: a block (tool, system or message block) carrying ``cache_control: {"type": "ephemeral"}`` (optional
``"ttl": "1h"``; a top-level ``cache_control`` marks the last block) ends a cacheable prefix. The longest such prefix
seen before for the model (5-minute TTL, refreshed on each hit) is a cache read; the tokens from there up to the last
breakpoint are cache writes (``usage.cache_creation`` splits them by TTL); prefixes under `min_cacheable_tokens`
(default 1024, "Minimum cacheable prompt length") are not cached.

Another model answering (`answered_by`): the response's ``model`` names the answering model; if the request carried
``fallbacks`` (server-side fallback beta), ``usage.iterations`` holds one ``{"type": "fallback_message", "model":
...}`` entry with its usage, as the SDK's ``BetaFallbackMessageIterationUsage`` describes. The call is admitted
against the requested model; when the answering model is configured here (with another pool), its tokens are moved
to the answering model's ITPM/OTPM at settlement (the requested model keeps the request).

``Call.counted`` keys: requests, input_tokens (ITPM charge), output_tokens_at_admission (max_tokens),
output_tokens (OTPM charge after settlement).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from tests.standins.base import (
    CACHE_TTL,
    Breakpoint,
    Call,
    ModelBehaviour,
    PromptCache,
    Reply,
    Request,
    StandIn,
    TokenBucket,
    count_tokens,
    filler_text,
    fingerprint,
    read_markers,
    rfc3339,
    tool_call,
)

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
               413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 503: "api_error", 529: "overloaded_error"}
ERROR_MESSAGES = {500: "Internal server error", 503: "Service unavailable", 529: "Overloaded"}
DELTA_TOKENS = 16


@dataclass
class AnthropicModel(ModelBehaviour):
    """An Anthropic model's limits (None: not limited) and behaviour."""

    requests_per_minute: int | None = None
    input_tokens_per_minute: int | None = None
    output_tokens_per_minute: int | None = None


@dataclass
class AnthropicLimits:
    requests: TokenBucket | None
    input_tokens: TokenBucket | None
    output_tokens: TokenBucket | None


def round_thousand(value: int) -> int:
    return (value + 500) // 1000 * 1000


class AnthropicStandIn(StandIn):
    """Anthropic Messages API stand-in; see the module docstring for what it counts."""

    provider = "anthropic"
    model_class = AnthropicModel

    def __init__(self, models: dict[str, Any] | None = None, *, round_token_headers: bool = True, **options: Any) -> None:
        super().__init__(models, **options)
        self.round_token_headers = round_token_headers
        self.cache = PromptCache()

    def new_limits(self, config: AnthropicModel, now: float) -> AnthropicLimits:
        def bucket(limit: int | None) -> TokenBucket | None:
            return TokenBucket(limit, now) if limit else None

        return AnthropicLimits(bucket(config.requests_per_minute), bucket(config.input_tokens_per_minute),
                               bucket(config.output_tokens_per_minute))

    def _reset_caches(self) -> None:
        self.cache = PromptCache()

    # HTTP

    def route(self, request: Request, reply: Reply) -> None:
        if self.api_key and self._key(request) != self.api_key:
            self._error(reply, 401, "invalid x-api-key")
        elif request.method == "POST" and request.path == "/v1/messages":
            self._messages(request, reply)
        elif request.method == "GET" and request.path == "/v1/models":
            with self.lock:
                listed = [model for model, config in self.models.items() if config.reachable]
            reply.json(200, {"data": [self._model(m) for m in listed], "has_more": False,
                             "first_id": listed[0] if listed else None, "last_id": listed[-1] if listed else None})
        elif request.method == "GET" and request.path.startswith("/v1/models/"):
            model = request.path.removeprefix("/v1/models/")
            config = self.models.get(model)
            if config and config.reachable:
                reply.json(200, self._model(model))
            else:
                self._error(reply, 404, f"model: {model}")
        else:
            self._error(reply, 404, f"Not found: {request.method} {request.path}")

    def bad_request(self, request: Request, reply: Reply, message: str) -> None:
        self._error(reply, 400, message)

    @staticmethod
    def _key(request: Request) -> str | None:
        return request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ") or None

    @staticmethod
    def _model(model: str) -> dict[str, Any]:
        return {"type": "model", "id": model, "display_name": model, "created_at": "2025-09-29T00:00:00Z"}

    def _error(self, reply: Reply, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        body = {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
                "request_id": f"req_standin_{self.next_id()}"}
        reply.json(status, body, {"request-id": body["request_id"], **(headers or {})})

    # The call

    def _messages(self, request: Request, reply: Reply) -> None:
        body = request.body if isinstance(request.body, dict) else {}
        model, max_tokens, messages = body.get("model"), body.get("max_tokens"), body.get("messages")
        for name, value, kind in (("model", model, str), ("max_tokens", max_tokens, int), ("messages", messages, list)):
            if not isinstance(value, kind) or isinstance(value, bool):
                self._error(reply, 400, f"{name}: Field required")
                return
        if max_tokens < 0:
            self._error(reply, 400, "max_tokens: Input should be greater than or equal to 0")
            return
        stream = bool(body.get("stream"))
        call = Call(provider=self.provider, model=model, at=self.clock(), stream=stream, max_tokens=max_tokens)
        config = self.models.get(model)
        if config is None or not config.reachable:
            call.status, call.error = 404, "not_found_error"
            self.record(call)
            self._error(reply, 404, f"model: {model}")
            return
        if config.fail_status:
            call.status, call.error = config.fail_status, ERROR_TYPES.get(config.fail_status, "api_error")
            self.record(call)
            self._error(reply, config.fail_status, ERROR_MESSAGES.get(config.fail_status, f"stand-in error {config.fail_status}"))
            return

        blocks, breakpoints, total, markers = self._count(body)
        output, capped = self.output_for(config, max_tokens, markers)
        with self.lock:
            now = self.clock()
            call.at = now
            limits = self.limits(model)
            scope = self.pool(model) + "|"
            plan = self.cache.plan(scope, breakpoints, now, config.min_cacheable_tokens)
            read = min(plan.read, total)
            write = min(plan.write, total - read)
            uncached = total - read - write
            input_charge = uncached + write
            needs = [("requests", limits.requests, 1), ("input_tokens", limits.input_tokens, input_charge),
                     ("output_tokens", limits.output_tokens, max_tokens)]
            blocked = [(name, bucket, amount) for name, bucket, amount in needs if bucket and bucket.level(now) < amount]
            if blocked:
                waits = [bucket.wait_for(amount, now) for _, bucket, amount in blocked]
                retry_after = 60 if any(w is None for w in waits) else max(1, math.ceil(max(waits)))
                name, bucket, _ = blocked[0]
                call.status, call.throttled, call.limit, call.error = 429, True, name, "rate_limit_error"
                headers = {**self._headers(limits, now), "retry-after": str(retry_after)}
                self.record(call)
                unit = {"requests": "requests", "input_tokens": "input tokens", "output_tokens": "output tokens"}[name]
                self._error(reply, 429, f"This request would exceed the rate limit for your organization of {bucket.limit:,} {unit} per minute "
                                        f"(model: {model}). For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the "
                                        "response headers for current usage. Please reduce the prompt length or the maximum tokens requested, "
                                        "or try again later.", headers)
                return
            for _, bucket, amount in needs:
                if bucket:
                    bucket.take(amount, now)
            self.cache.commit(scope, plan, now)
            admitted_headers = self._headers(limits, now)

        answering = config.answered_by or model
        write_5m = min(plan.write_5m, write)
        usage: dict[str, Any] = {
            "input_tokens": uncached, "cache_creation_input_tokens": write, "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write - write_5m},
            "output_tokens": output, "service_tier": "standard",
        }
        if config.answered_by and body.get("fallbacks"):
            usage["iterations"] = [{"type": "fallback_message", "model": answering, "input_tokens": uncached,
                                    "cache_creation_input_tokens": write, "cache_read_input_tokens": read, "output_tokens": output}]
        call.answered_by = config.answered_by
        call.input_tokens, call.output_tokens = uncached, output
        call.cache_read_input_tokens, call.cache_write_input_tokens = read, write
        message_id = f"msg_standin_{self.next_id()}"
        request_id = f"req_standin_{self.next_id()}"
        stop_reason = "max_tokens" if capped else "end_turn"
        text = filler_text(output)
        wanted = tool_call([tool.get("name", "") for tool in body.get("tools") or [] if isinstance(tool, dict)], markers)
        tool_block = None
        if wanted and not capped:
            stop_reason = "tool_use"
            tool_block = {"type": "tool_use", "id": f"toolu_standin{self.next_id()}", "name": wanted[0], "input": wanted[1]}

        def settle() -> dict[str, str]:
            with self.lock:
                now = self.clock()
                output_charge = output
                other = self.models.get(config.answered_by) if config.answered_by else None
                if other is not None and self.pool(config.answered_by) != self.pool(model):
                    for bucket, amount in ((limits.input_tokens, input_charge), (limits.output_tokens, max_tokens)):
                        if bucket:
                            bucket.give(amount, now)
                    moved = self.limits(config.answered_by)
                    for bucket, amount in ((moved.input_tokens, input_charge), (moved.output_tokens, output)):
                        if bucket:
                            bucket.take(amount, now)
                elif limits.output_tokens:
                    limits.output_tokens.give(max_tokens - output, now)
                call.counted = {"requests": 1, "input_tokens": input_charge, "output_tokens_at_admission": max_tokens,
                                "output_tokens": output_charge}
                self.record(call)
                return self._headers(limits, now)

        if not stream:
            self.hold()
            headers = settle()
            reply.json(200, {
                "id": message_id, "type": "message", "role": "assistant", "model": answering,
                "content": ([{"type": "text", "text": text}] if output else []) + ([tool_block] if tool_block else []),
                "stop_reason": stop_reason, "stop_sequence": None, "usage": usage,
            }, {"request-id": request_id, **headers})
            return

        reply.start(200, "text/event-stream", {"request-id": request_id, **admitted_headers})

        def event(name: str, data: dict[str, Any]) -> None:
            reply.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

        start_usage = {key: usage[key] for key in
                       ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cache_creation", "service_tier")}
        event("message_start", {"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": answering, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {**start_usage, "output_tokens": min(1, output)},
        }})
        event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        event("ping", {"type": "ping"})
        self.hold()
        step = DELTA_TOKENS * 4
        for start in range(0, len(text), step):
            delta = {"type": "text_delta", "text": text[start:start + step]}
            event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        event("content_block_stop", {"type": "content_block_stop", "index": 0})
        if tool_block:
            event("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {**tool_block, "input": {}}})
            event("content_block_delta", {"type": "content_block_delta", "index": 1,
                                          "delta": {"type": "input_json_delta", "partial_json": json.dumps(tool_block["input"])}})
            event("content_block_stop", {"type": "content_block_stop", "index": 1})
        settle()
        delta_usage = {key: usage[key] for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")}
        if "iterations" in usage:
            delta_usage["iterations"] = usage["iterations"]
        event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": delta_usage})
        event("message_stop", {"type": "message_stop"})
        reply.end()

    def _count(self, body: dict[str, Any]) -> tuple[list[Any], list[Breakpoint], int, dict[str, int]]:
        """(block identities, cache breakpoints, total input tokens, markers of the last user message)."""
        entries: list[tuple[Any, dict[str, Any]]] = []
        for tool in body.get("tools") or []:
            if isinstance(tool, dict):
                entries.append(("tool", tool))
        system = body.get("system")
        if isinstance(system, str):
            entries.append(("system", {"type": "text", "text": system}))
        elif isinstance(system, list):
            entries.extend(("system", block) for block in system if isinstance(block, dict))
        markers: dict[str, int] = {}
        for message in body.get("messages") or []:
            if not isinstance(message, dict):
                continue
            role, content = message.get("role"), message.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else [b for b in content or [] if isinstance(b, dict)]
            entries.extend((role, block) for block in blocks)
            if role == "user":
                markers = read_markers(" ".join(b.get("text", "") for b in blocks if isinstance(b.get("text"), str)))
        if isinstance(body.get("cache_control"), dict) and entries:
            role, block = entries[-1]
            entries[-1] = (role, {**block, "cache_control": body["cache_control"]})

        identities: list[Any] = []
        breakpoints: list[Breakpoint] = []
        total = 0
        for role, block in entries:
            plain = {k: v for k, v in block.items() if k != "cache_control"}
            identities.append([role, plain])
            text = plain.get("text") if plain.get("type") == "text" and isinstance(plain.get("text"), str) else json.dumps(plain, sort_keys=True)
            total += count_tokens(text)
            control = block.get("cache_control")
            if isinstance(control, dict):
                ttl = CACHE_TTL.get(str(control.get("ttl", "5m")), CACHE_TTL["5m"])
                breakpoints.append(Breakpoint(fingerprint(identities), total, ttl))
        if "input_tokens" in markers:
            total = markers["input_tokens"]
        return identities, breakpoints, total, markers

    def _headers(self, limits: AnthropicLimits, now: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        named = (("requests", limits.requests), ("input-tokens", limits.input_tokens), ("output-tokens", limits.output_tokens))
        for name, bucket in named:
            if bucket:
                remaining = bucket.remaining(now)
                if name != "requests" and self.round_token_headers:
                    remaining = round_thousand(remaining)
                headers[f"anthropic-ratelimit-{name}-limit"] = str(bucket.limit)
                headers[f"anthropic-ratelimit-{name}-remaining"] = str(remaining)
                headers[f"anthropic-ratelimit-{name}-reset"] = rfc3339(now + bucket.until_full(now))
        token_buckets = [(name, bucket) for name, bucket in named[1:] if bucket]
        if token_buckets:
            name, _ = min(token_buckets, key=lambda item: item[1].level(now) / item[1].limit)
            for part in ("limit", "remaining", "reset"):
                headers[f"anthropic-ratelimit-tokens-{part}"] = headers[f"anthropic-ratelimit-{name}-{part}"]
        return headers
