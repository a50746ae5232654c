"""A local stand-in for OpenAI's chat completions API (POST /v1/chat/completions, streaming too; GET /v1/models) that
enforces requests- and tokens-per-minute limits the way OpenAI documents them.

Source: OpenAI, "Rate limits" guide (platform.openai.com/docs/guides/rate-limits; developers.openai.com/api/docs/
guides/rate-limits) and "Prompt caching" guide.

Counting, per model (or per `pool`):

- The guide: "Your rate limit is calculated as the maximum of max_tokens and the estimated number of tokens based on
  the character count of your request." Implemented literally, at admission: ``charge = max(max_out, estimate)``,
  where ``max_out = (max_completion_tokens or max_tokens or the model's default_max_tokens or 0) * n`` and
  ``estimate = ceil(characters / 4)`` over the request's message contents (text parts; any other part as JSON), names
  and tool definitions, markers removed. The limiter estimates from characters and does not tokenize, so cached
  prompt tokens are in the estimate like any others. Community reports describe the estimate being *added* to
  max_tokens instead; ``charge_rule="sum"`` gives ``estimate + max_out`` for those who want the harsher reading.
- The charge is final: unused output is not refunded (the guide gives no adjustment step, and advises setting
  max_tokens close to the expected response size for that reason).
- "Unsuccessful requests contribute to your per-minute limit": a throttled request still takes one request and its
  token charge (``count_throttled=False`` turns this off). A bucket may be overdrawn down to minus its limit.
- Requests per minute: one per request.
- Algorithm: a bucket per limit, refilled continuously at limit/60 per second; ``x-ratelimit-reset-*`` is "the time
  until the rate limit resets to its initial state", i.e. until the bucket is full, as a duration ("1s", "6m0s",
  "20ms", "8.64s").
- Headers on every chat completion answer (429s too): ``x-ratelimit-limit-requests``, ``x-ratelimit-limit-tokens``,
  ``x-ratelimit-remaining-requests``, ``x-ratelimit-remaining-tokens``, ``x-ratelimit-reset-requests``,
  ``x-ratelimit-reset-tokens`` (for the limits configured), and ``x-request-id``.
- A throttle: HTTP 429, ``{"error": {"message": "Rate limit reached for <model> ... on tokens per min (TPM): Limit L,
  Used U, Requested R. Please try again in 2.4s. ...", "type": "tokens" or "requests", "param": null, "code":
  "rate_limit_exceeded"}}``; a request larger than the whole limit gets "Request too large ...".

Usage reported: ``prompt_tokens`` is the estimate (or the ``[[input_tokens=N]]`` marker: a way to make the limiter's
estimate and the tokenizer disagree, as they do at OpenAI); ``completion_tokens`` the output (``[[output_tokens=N]]``,
else the model's or stand-in's default, capped at max_tokens; times n); ``prompt_tokens_details.cached_tokens`` from
prompt caching: a prompt of 1024+ tokens whose leading characters match a prompt the model saw in the last 5 minutes
reports the common prefix (characters / 4) in 128-token increments from 1024 ("cache hits are only possible for exact
prefix matches"; "in increments of 128 tokens"). Streaming sends ``data: {chunk}`` lines ending ``data: [DONE]``, with a
final usage chunk (empty ``choices``) only when ``stream_options.include_usage`` is true.

Another model answering (`answered_by`): only the response's ``model`` changes (as when OpenAI answers an alias with a
dated snapshot); the limits counted are the requested model's, since OpenAI charges at admission.

``Call.counted`` keys: requests, tokens (the admission charge), estimated_tokens (the character estimate).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from tests.standins.base import (
    Call,
    ModelBehaviour,
    PrefixCache,
    Reply,
    Request,
    StandIn,
    TokenBucket,
    filler_text,
    read_markers,
    strip_markers,
    tool_call,
)

DELTA_TOKENS = 16
CACHE_MIN_TOKENS = 1024
CACHE_INCREMENT = 128


@dataclass
class OpenAIModel(ModelBehaviour):
    """An OpenAI model's limits (None: not limited) and behaviour; default_max_tokens is what a request naming
    neither max_tokens nor max_completion_tokens is charged for output (None: nothing, only the estimate)."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    default_max_tokens: int | None = None


@dataclass
class OpenAILimits:
    requests: TokenBucket | None
    tokens: TokenBucket | None


def go_duration(seconds: float) -> str:
    """A duration the way OpenAI's reset headers write it: "20ms", "8.64s", "6m0s"."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    minutes, rest = divmod(round(seconds, 3), 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


class OpenAIStandIn(StandIn):
    """OpenAI chat completions stand-in; see the module docstring for what it counts."""

    provider = "openai"
    model_class = OpenAIModel

    def __init__(self, models: dict[str, Any] | None = None, *, charge_rule: Literal["max", "sum"] = "max",
                 count_throttled: bool = True, **options: Any) -> None:
        super().__init__(models, **options)
        if charge_rule not in ("max", "sum"):
            raise ValueError("charge_rule is 'max' or 'sum'")
        self.charge_rule = charge_rule
        self.count_throttled = count_throttled
        self.cache = PrefixCache()

    def new_limits(self, config: OpenAIModel, now: float) -> OpenAILimits:
        return OpenAILimits(TokenBucket(config.requests_per_minute, now) if config.requests_per_minute else None,
                            TokenBucket(config.tokens_per_minute, now) if config.tokens_per_minute else None)

    def _reset_caches(self) -> None:
        self.cache = PrefixCache()

    # HTTP

    def route(self, request: Request, reply: Reply) -> None:
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
            self._error(reply, 401, f"Incorrect API key provided: {key}.", "invalid_api_key")
        elif request.method == "POST" and request.path == "/v1/chat/completions":
            self._completions(request, reply)
        elif request.method == "GET" and request.path == "/v1/models":
            with self.lock:
                listed = [model for model, config in self.models.items() if config.reachable]
            reply.json(200, {"object": "list", "data": [self._model(m) for m in listed]}, self._ids())
        elif request.method == "GET" and request.path.startswith("/v1/models/"):
            model = request.path.removeprefix("/v1/models/")
            config = self.models.get(model)
            if config and config.reachable:
                reply.json(200, self._model(model), self._ids())
            else:
                self._not_found(reply, model)
        else:
            self._error(reply, 404, f"Invalid URL ({request.method} {request.path})", None)

    def bad_request(self, request: Request, reply: Reply, message: str) -> None:
        self._error(reply, 400, message, None)

    @staticmethod
    def _model(model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": 1_715_367_049, "owned_by": "system"}

    def _ids(self) -> dict[str, str]:
        return {"x-request-id": f"req_{self.next_id()}", "openai-processing-ms": "1", "openai-version": "2020-10-01"}

    def _error(self, reply: Reply, status: int, message: str, code: str | None, kind: str = "invalid_request_error",
               headers: dict[str, str] | None = None) -> None:
        reply.json(status, {"error": {"message": message, "type": kind, "param": None, "code": code}}, {**self._ids(), **(headers or {})})

    def _not_found(self, reply: Reply, model: str) -> None:
        self._error(reply, 404, f"The model `{model}` does not exist or you do not have access to it.", "model_not_found")

    def _forced(self, reply: Reply, status: int) -> None:
        if status == 429:
            message = "You exceeded your current quota, please check your plan and billing details."
            self._error(reply, 429, message, "insufficient_quota", "insufficient_quota")
        elif status == 503:
            self._error(reply, 503, "The engine is currently overloaded, please try again later.", None, "server_error")
        elif status >= 500:
            self._error(reply, status, "The server had an error while processing your request. Sorry about that!", None, "server_error")
        else:
            self._error(reply, status, f"stand-in error {status}", None)

    # The call

    def _completions(self, request: Request, reply: Reply) -> None:
        body = request.body if isinstance(request.body, dict) else {}
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str):
            self._error(reply, 400, "you must provide a model parameter", None)
            return
        if not isinstance(messages, list):
            self._error(reply, 400, "Missing required parameter: 'messages'.", None)
            return
        stream = bool(body.get("stream"))
        n = body.get("n") if isinstance(body.get("n"), int) and body.get("n") > 0 else 1
        requested_max = body.get("max_completion_tokens") or body.get("max_tokens")
        call = Call(provider=self.provider, model=model, at=self.clock(), stream=stream,
                    max_tokens=requested_max if isinstance(requested_max, int) else None)
        config = self.models.get(model)
        if config is None or not config.reachable:
            call.status, call.error = 404, "model_not_found"
            self.record(call)
            self._not_found(reply, model)
            return
        if config.fail_status:
            call.status, call.error = config.fail_status, f"status_{config.fail_status}"
            self.record(call)
            self._forced(reply, config.fail_status)
            return

        prompt_text, markers = self._prompt(body)
        estimate = math.ceil(len(prompt_text) / 4)
        max_out = (call.max_tokens if call.max_tokens is not None else (config.default_max_tokens or 0)) * n
        charge = estimate + max_out if self.charge_rule == "sum" else max(max_out, estimate)
        prompt_tokens = markers.get("input_tokens", estimate)
        cap = call.max_tokens if call.max_tokens is not None else 1 << 30
        output, capped = self.output_for(config, cap, markers)

        with self.lock:
            now = self.clock()
            call.at = now
            limits = self.limits(model)
            call.counted = {"requests": 1, "tokens": charge, "estimated_tokens": estimate}
            blocked = None
            if limits.requests and limits.requests.level(now) < 1:
                blocked = ("requests", limits.requests, 1)
            elif limits.tokens and limits.tokens.level(now) < charge:
                blocked = ("tokens", limits.tokens, charge)
            if blocked:
                name, bucket, amount = blocked
                used = bucket.limit - bucket.remaining(now)
                wait = bucket.wait_for(amount, now)
                if self.count_throttled:
                    for b, a in ((limits.requests, 1), (limits.tokens, charge)):
                        if b:
                            b.take(a, now)
                else:
                    call.counted = {}
                headers = self._headers(limits, now)
                call.status, call.throttled, call.limit, call.error = 429, True, name, "rate_limit_exceeded"
                self.record(call)
                label = "requests per min (RPM)" if name == "requests" else "tokens per min (TPM)"
                if wait is None:
                    message = (f"Request too large for {model} in organization org-standin on {label}: Limit {bucket.limit}, Requested {amount}. "
                               "The input or output tokens must be reduced in order to run successfully. "
                               "Visit https://platform.openai.com/account/rate-limits to learn more.")
                else:
                    message = (f"Rate limit reached for {model} in organization org-standin on {label}: Limit {bucket.limit}, Used {used}, "
                               f"Requested {amount}. Please try again in {go_duration(wait)}. "
                               "Visit https://platform.openai.com/account/rate-limits to learn more.")
                self._error(reply, 429, message, "rate_limit_exceeded", name, headers)
                return
            for bucket, amount in ((limits.requests, 1), (limits.tokens, charge)):
                if bucket:
                    bucket.take(amount, now)
            scope = self.pool(model)
            cached = 0
            if prompt_tokens >= CACHE_MIN_TOKENS:
                common = self.cache.longest_prefix(scope, prompt_text, now) // 4
                if common >= CACHE_MIN_TOKENS:
                    cached = min(prompt_tokens, CACHE_MIN_TOKENS + (common - CACHE_MIN_TOKENS) // CACHE_INCREMENT * CACHE_INCREMENT)
                self.cache.store(scope, prompt_text, now)
            headers = self._headers(limits, now)

        answering = config.answered_by or model
        completion_tokens = output * n
        call.answered_by = config.answered_by
        call.input_tokens, call.output_tokens, call.cache_read_input_tokens = prompt_tokens, completion_tokens, cached
        usage = {
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }
        finish_reason = "length" if capped else "stop"
        text = filler_text(output)
        names = [(tool.get("function") or {}).get("name", "") for tool in body.get("tools") or [] if isinstance(tool, dict)]
        wanted = tool_call(names, markers)
        calls = []
        if wanted and not capped:
            finish_reason = "tool_calls"
            calls = [{"id": f"call_standin{self.next_id()}", "type": "function",
                      "function": {"name": wanted[0], "arguments": json.dumps(wanted[1])}}]
        completion_id = f"chatcmpl-standin{self.next_id()}"
        created = int(call.at)
        base = {"id": completion_id, "created": created, "model": answering, "system_fingerprint": "fp_standin", "service_tier": "default"}

        if not stream:
            self.hold()
            self.record(call)
            reply.json(200, {
                **base, "object": "chat.completion",
                "choices": [{"index": i, "message": {"role": "assistant", "content": text, "refusal": None, "annotations": [],
                                                     **({"tool_calls": calls} if calls else {})},
                             "logprobs": None, "finish_reason": finish_reason} for i in range(n)],
                "usage": usage,
            }, {**self._ids(), **headers})
            return

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        reply.start(200, "text/event-stream; charset=utf-8", {**self._ids(), **headers})

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> None:
            data = {**base, "object": "chat.completion.chunk", "choices": choices, **extra}
            if include_usage and "usage" not in data:
                data["usage"] = None
            reply.write(f"data: {json.dumps(data)}\n\n".encode())

        for i in range(n):
            chunk([{"index": i, "delta": {"role": "assistant", "content": "", "refusal": None}, "logprobs": None, "finish_reason": None}])
        self.hold()
        step = DELTA_TOKENS * 4
        for i in range(n):
            for start in range(0, len(text), step):
                chunk([{"index": i, "delta": {"content": text[start:start + step]}, "logprobs": None, "finish_reason": None}])
            for call_index, requested in enumerate(calls):
                function = requested["function"]
                opening = {"index": call_index, "id": requested["id"], "type": "function", "function": {"name": function["name"], "arguments": ""}}
                rest = {"index": call_index, "function": {"arguments": function["arguments"]}}
                for delta in (opening, rest):
                    chunk([{"index": i, "delta": {"tool_calls": [delta]}, "logprobs": None, "finish_reason": None}])
            chunk([{"index": i, "delta": {}, "logprobs": None, "finish_reason": finish_reason}])
        self.record(call)
        if include_usage:
            chunk([], usage=usage)
        reply.write(b"data: [DONE]\n\n")
        reply.end()

    @staticmethod
    def _prompt(body: dict[str, Any]) -> tuple[str, dict[str, int]]:
        """(the request's text as the limiter sees it, markers of the last user or tool message)."""
        parts: list[str] = []
        for tool in body.get("tools") or []:
            parts.append(json.dumps(tool, sort_keys=True))
        markers: dict[str, int] = {}
        for message in body.get("messages") or []:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            texts: list[str] = []
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        texts.append(part["text"])
                    else:
                        texts.append(json.dumps(part, sort_keys=True))
            if isinstance(message.get("name"), str):
                parts.append(message["name"])
            parts.extend(strip_markers(text) for text in texts)
            if message.get("role") in ("user", "tool"):  # a tool result answers for the user, as in the other APIs
                markers = read_markers(" ".join(texts))
        return "".join(parts), markers

    def _headers(self, limits: OpenAILimits, now: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, bucket in (("requests", limits.requests), ("tokens", limits.tokens)):
            if bucket:
                headers[f"x-ratelimit-limit-{name}"] = str(bucket.limit)
                headers[f"x-ratelimit-remaining-{name}"] = str(bucket.remaining(now))
                headers[f"x-ratelimit-reset-{name}"] = go_duration(bucket.until_full(now))
        return headers
