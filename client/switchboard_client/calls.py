"""What one helper call is, shared by `Switchboard` and `AsyncSwitchboard`: its request and estimates, which models
the helper can speak to, the rules of its attempts, the SDK clients it is made with and the stream it answers with.
The two clients only add the calls (plain or awaited)."""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any, Literal

from switchboard_client.adapters import anthropic as anthropic_adapter
from switchboard_client.adapters import anthropic_bedrock, bedrock, handed_in
from switchboard_client.adapters import openai as openai_adapter
from switchboard_client.api import Complexity, Decision, Model
from switchboard_client.chat import ChatRequest
from switchboard_client.errors import FailedFast, RateLimited, Refused, SwitchboardError
from switchboard_client.estimate import estimate_tokens
from switchboard_client.finals import CompletionCollector, ConverseCollector, MessageCollector
from switchboard_client.usage import Failure, describe_provider_error

Helper = Literal["messages", "chat_completions", "converse", "chat"]
MAX_SKIPPED = 50
# The provider kinds (Switchboard's `apis`) each helper can call; `chat` sends those whose SDK is installed.
HELPER_APIS: dict[str, tuple[str, ...]] = {
    "messages": ("anthropic", "bedrock"),
    "chat_completions": ("openai", "openai_compatible"),
    "converse": ("bedrock",),
}
SDK_MODULES = {"anthropic": "anthropic", "openai": "openai", "openai_compatible": "openai", "bedrock": "boto3"}


@dataclass
class HelperCall:
    """One helper call: which API, its parameters, and what to route with."""

    helper: Helper
    params: dict[str, Any]
    stream: bool
    route: dict[str, Any]
    exclude: list[str] = field(default_factory=list)
    chat: ChatRequest | None = None
    """The neutral request of `sb.chat`, translated for the chosen model's API by `for_model`."""

    def for_model(self, model: Model) -> HelperCall:
        """The call to make to this model: for `sb.chat`, the helper of its API with the request in that API's words."""
        if self.chat is None:
            return self
        if model.kind in bedrock.KINDS:
            return replace(self, helper="converse", params=self.chat.converse(), chat=None)
        if model.kind in anthropic_adapter.KINDS:
            return replace(self, helper="messages", params=self.chat.anthropic(), chat=None)
        return replace(self, helper="chat_completions", params=self.chat.openai(model.kind), chat=None)

    @property
    def estimated_input(self) -> int:
        return int(self.route.get("estimated_input_tokens") or 0)

    @property
    def sdk_adapter(self) -> ModuleType:
        """The SDK module for a model outside Bedrock."""
        return anthropic_adapter if self.helper == "messages" else openai_adapter

    def bedrock_request(self) -> dict[str, Any]:
        return anthropic_bedrock.to_converse(self.params) if self.helper == "messages" else self.params

    def bedrock_answer(self, response: dict[str, Any], model: Model) -> Any:
        return anthropic_bedrock.to_message(response, model.invoke_id) if self.helper == "messages" else response


def _route_args(category: str | None, complexity: Complexity | None, tier: str | None, estimated_input_tokens: int,
                estimated_output_tokens: int | None, attempt: int, estimated_cache_read_tokens: int | None) -> dict[str, Any]:
    return {"category": category, "complexity": complexity, "tier": tier, "estimated_input_tokens": estimated_input_tokens,
            "estimated_output_tokens": estimated_output_tokens, "attempt": attempt, "estimated_cache_read_tokens": estimated_cache_read_tokens}


def _with_apis(call: HelperCall) -> HelperCall:
    call.route["apis"] = HELPER_APIS[call.helper]
    return call


def messages_call(*, messages: list[Any], max_tokens: int, category: str | None, complexity: Complexity | None, tier: str | None,
                  estimated_input_tokens: int | None, exclude: Iterable[str], attempt: int, stream: bool,
                  estimated_cache_read_tokens: int | None, kwargs: dict[str, Any]) -> HelperCall:
    estimate = estimate_tokens(kwargs.get("system"), messages, kwargs.get("tools")) if estimated_input_tokens is None else estimated_input_tokens
    return _with_apis(HelperCall("messages", {"messages": messages, "max_tokens": max_tokens, **kwargs}, stream,
                                 _route_args(category, complexity, tier, estimate, max_tokens, attempt, estimated_cache_read_tokens), list(exclude)))


def chat_completions_call(*, messages: list[Any], category: str | None, complexity: Complexity | None, tier: str | None,
                          max_tokens: int | None, max_completion_tokens: int | None, estimated_input_tokens: int | None,
                          exclude: Iterable[str], attempt: int, stream: bool, estimated_cache_read_tokens: int | None,
                          kwargs: dict[str, Any]) -> HelperCall:
    params = {"messages": messages, **kwargs}
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if max_completion_tokens is not None:
        params["max_completion_tokens"] = max_completion_tokens
    estimate = estimate_tokens(messages, kwargs.get("tools")) if estimated_input_tokens is None else estimated_input_tokens
    route = _route_args(category, complexity, tier, estimate, max_completion_tokens or max_tokens, attempt, estimated_cache_read_tokens)
    return _with_apis(HelperCall("chat_completions", params, stream, route, list(exclude)))


def converse_call(*, messages: list[Any], category: str | None, complexity: Complexity | None, tier: str | None,
                  estimated_input_tokens: int | None, exclude: Iterable[str], attempt: int, stream: bool,
                  estimated_cache_read_tokens: int | None, kwargs: dict[str, Any]) -> HelperCall:
    estimate = estimated_input_tokens
    if estimate is None:
        estimate = estimate_tokens(kwargs.get("system"), messages, kwargs.get("toolConfig"))
    max_output = (kwargs.get("inferenceConfig") or {}).get("maxTokens")
    route = _route_args(category, complexity, tier, estimate, max_output, attempt, estimated_cache_read_tokens)
    return _with_apis(HelperCall("converse", {"messages": messages, **kwargs}, stream, route, list(exclude)))


def chat_call(*, request: ChatRequest, category: str | None, complexity: Complexity | None, tier: str | None,
              estimated_input_tokens: int | None, exclude: Iterable[str], attempt: int, stream: bool,
              estimated_cache_read_tokens: int | None, apis: tuple[str, ...]) -> HelperCall:
    estimate = estimate_tokens(*request.estimate_parts()) if estimated_input_tokens is None else estimated_input_tokens
    route = _route_args(category, complexity, tier, estimate, request.max_tokens, attempt, estimated_cache_read_tokens)
    route["apis"] = apis
    return HelperCall("chat", {}, stream, route, list(exclude), chat=request)


def routed_args(*, category: str | None, complexity: Complexity | None, tier: str | None, estimated_input_tokens: int | None,
                estimated_output_tokens: int | None, exclude: Iterable[str], attempt: int,
                estimated_cache_read_tokens: int | None, apis: Iterable[str] | None) -> dict[str, Any]:
    """What a routed block routes with."""
    return {"category": category, "complexity": complexity, "tier": tier, "estimated_input_tokens": estimated_input_tokens,
            "estimated_output_tokens": estimated_output_tokens, "exclude": tuple(exclude), "attempt": attempt,
            "estimated_cache_read_tokens": estimated_cache_read_tokens, "apis": tuple(apis) if apis is not None else None}


def speaks(helper: Helper, model: Model) -> bool:
    """Whether a helper can call this model: `messages` Anthropic models and Bedrock models of the Anthropic family,
    `chat_completions` OpenAI and OpenAI-compatible ones, `converse` any Bedrock model, `chat` any of them."""
    if helper == "chat":
        return True
    if helper == "messages":
        return model.kind in anthropic_adapter.KINDS or (
            model.kind in bedrock.KINDS and anthropic_bedrock.family_is_anthropic(model.invoke_id, model.model_id))
    if helper == "chat_completions":
        return model.kind in openai_adapter.KINDS
    return model.kind in bedrock.KINDS


class Attempts:
    """The way of one helper call through its attempts: what to route with next, and when to stop."""

    def __init__(self, call: HelperCall, max_attempts: int, backoff_cap: float = 20.0) -> None:
        self.call = call
        self.max_attempts = max_attempts
        self.backoff_cap = backoff_cap
        self.attempt = self.first_attempt = call.route.pop("attempt")
        self.skipped = 0
        self.backoffs = 0
        self.last_error: Exception | None = None
        self.last_model: str | None = None

    def route_args(self) -> dict[str, Any]:
        return {**self.call.route, "exclude": self.call.exclude, "attempt": self.attempt}

    @property
    def route_key(self) -> tuple[Any, ...]:
        """What identifies the route or tier these attempts walk (for what the client learns about it)."""
        route = self.call.route
        return route.get("category"), route.get("complexity"), route.get("tier")

    def refused(self, refusal: Refused) -> Refused:
        """The refusal to raise; after provider failures it names the last one, which is also its cause (they left
        nothing to try)."""
        if self.last_error is not None:
            refusal.args = (f"{refusal.args[0]} (after {self.last_model} answered {describe_provider_error(self.last_error)})",)
            refusal.__cause__ = self.last_error
        return refusal

    def wait_out(self, refusal: Refused) -> float | None:
        """Seconds to wait before routing again after Switchboard refused a route that never falls back because the
        provider asked its primary to wait (a reported retry-after, a cooldown, rate-limit headers), when that is under
        the back-off cap; None to raise the refusal. Waits count against the attempts, without being provider calls."""
        waiting = {"cooldown", "rate_limit"}
        if (type(refusal) is not FailedFast or refusal.retry_after is None or refusal.retry_after > self.backoff_cap
                or self.backoffs + 1 >= self.max_attempts or not any(entry.get("cause") in waiting for entry in refusal.trace)):
            return None
        self.backoffs += 1
        return float(refusal.retry_after)

    def skip(self, decision: Decision) -> None:
        """Routes past a model this helper cannot call; that is not an attempt."""
        self.skipped += 1
        self.call.exclude.append(decision.model.key)
        if self.skipped > MAX_SKIPPED:
            raise SwitchboardError(f"{self.call.helper}: Switchboard keeps choosing models this helper cannot call")

    def _left(self) -> bool:
        return self.attempt - self.first_attempt + 1 < self.max_attempts

    def retry(self, decision: Decision, failure: Failure | None, error: Exception) -> bool:
        """After a failed provider call: whether to route again past its model (a provider failure with attempts left)."""
        if failure is None or not self._left():
            return False
        self.call.exclude.append(decision.model.key)
        self.attempt += 1
        self.last_error, self.last_model = error, decision.model.key
        return True

    def back_off(self, decision: Decision, failure: Failure, error: Exception) -> float:
        """After a provider 429 on a route that never falls back: the seconds to wait before trying the same model as
        the next attempt. Raises RateLimited (from the provider's error) when the wait is beyond the cap or no
        attempt is left."""
        self.last_error, self.last_model = error, decision.model.key
        wait = float(failure.retry_after) if failure.retry_after is not None else min(8.0, 0.5 * 2 ** self.backoffs)
        if wait > self.backoff_cap or not self._left():
            why = (f"its retry-after of {wait:g} s is beyond the client's back-off cap of {self.backoff_cap:g} s"
                   if wait > self.backoff_cap else f"after {self.attempt - self.first_attempt + 1} attempts")
            error_out = RateLimited(
                f"provider_rate_limited: {decision.model.key} answered {describe_provider_error(error)}, and its route never falls "
                f"back: given up {why}. Retry in {math.ceil(wait)} s.", code="provider_rate_limited", retry_after=math.ceil(wait),
                body={"decision_id": decision.id, "primary": {"key": decision.model.key}})
            raise error_out from error
        self.backoffs += 1
        self.attempt += 1
        return wait


class SDKClients:
    """The SDK clients of one Switchboard client: those handed in (by provider slug or kind), else one built per
    provider kind, provider and base URL or region (boto3's from one Session). Safe to share between threads: a
    client is built once, under a lock."""

    def __init__(self, handed: Mapping[str, Any] | None, *, is_async: bool) -> None:
        self.handed = dict(handed or {})
        self.is_async = is_async
        self._built: dict[tuple[str, str, str | None], Any] = {}
        self._session: Any = None
        self._lock = threading.Lock()

    def chat_apis(self) -> tuple[str, ...]:
        """The provider kinds `sb.chat` can call: those handed a client, or whose SDK is installed."""
        return tuple(kind for kind, module in SDK_MODULES.items() if kind in self.handed or importlib.util.find_spec(module) is not None)

    def for_model(self, adapter: ModuleType, model: Model) -> Any:
        key = (model.kind, model.provider, model.base_url or model.region)
        client = self._built.get(key)
        if client is not None:
            return client
        with self._lock:
            if key not in self._built:
                handed = handed_in(self.handed, model.provider, model.kind)
                if adapter is bedrock:
                    if handed is None and self._session is None:
                        self._session = bedrock.new_session()
                    self._built[key] = bedrock.make_client(model, session=self._session, handed=handed)
                else:
                    self._built[key] = adapter.make_client(model, is_async=self.is_async, handed=handed)
            return self._built[key]

    def take_built(self) -> list[Any]:
        """Forgets every client and returns those built here (not handed in), for the caller to close."""
        with self._lock:
            built = [client for (kind, provider, _), client in self._built.items() if handed_in(self.handed, provider, kind) is None]
            self._built.clear()
        return built


def bedrock_stream(call: HelperCall, decision: Decision, response: dict[str, Any], stream_class: type, events: Any,
                   message_events: Any, **options: Any) -> Any:
    """A Bedrock ConverseStream as the helper answers it: for `messages`, a stream of Anthropic events; for `converse`,
    boto3's response with its `"stream"` a stream of boto3's events."""
    accumulator = bedrock.ConverseAccumulator(call.estimated_input)
    if call.helper == "messages":
        translated = message_events(events(response), decision.model.invoke_id, response, accumulator.feed)
        return stream_class(translated, accumulator, decision=decision, response=response, feed=False, collector=MessageCollector(), **options)
    stream = stream_class(events(response), accumulator, decision=decision, response=response, collector=ConverseCollector(), **options)
    return {**response, "stream": stream, "switchboard_decision": decision}


def sdk_stream(call: HelperCall, decision: Decision, opened: Any, stream_class: type, events: Any, **options: Any) -> Any:
    """An Anthropic or OpenAI SDK stream, read as it passes."""
    headers = opened.response.headers
    if call.sdk_adapter is anthropic_adapter:
        accumulator: Any = anthropic_adapter.MessagesAccumulator(headers)
        collector: Any = MessageCollector()
    else:
        accumulator, collector = openai_adapter.ChunkAccumulator(headers, call.estimated_input), CompletionCollector()
    return stream_class(events, accumulator, decision=decision, close=opened.close, response=opened.response, collector=collector, **options)


def attach(response: Any, decision: Decision, report: dict[str, Any] | None) -> Any:
    """The SDK's response with `switchboard_decision` and `switchboard_report` (keys of boto3's dict)."""
    if isinstance(response, dict):
        response["switchboard_decision"] = decision
        response["switchboard_report"] = report
    else:
        object.__setattr__(response, "switchboard_decision", decision)
        object.__setattr__(response, "switchboard_report", report)
    return response
