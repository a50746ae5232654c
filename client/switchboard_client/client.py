"""`Switchboard` and `AsyncSwitchboard`: route, call the chosen model with its official SDK, report, and on a
provider failure report it and try the next candidate.

The loop of every helper (`messages`, `chat_completions`, `converse`):

1. route (`estimated_input_tokens`: given, else about 4 characters a token of the request's text;
   `estimated_output_tokens`: the request's max tokens);
2. a model whose API this helper cannot speak (e.g. an OpenAI model for `messages`) is released (reported as used
   nothing) and routed past with `exclude`; that is not an attempt;
3. call it; on success report usage, cache tokens, the answering model and the rate-limit headers, and return the
   SDK's own response with `switchboard_decision` (and `switchboard_report`, the usage event) attached as attributes
   (keys of the dict for boto3's Converse response);
4. on a provider 429, 404, 5xx, timeout or refused connection: report it (`rate_limited`, `not_found`, `error`, with
   the provider's retry-after), then route again with the model in `exclude` and `attempt` + 1, up to
   `max_attempts` tries; the last failure is raised as the SDK raised it. Any other error (a 400, bad credentials)
   is the caller's: the decision is reported as used nothing and the error raised as it is.

Reports that fail (Switchboard unreachable) are logged, never raised by the helpers: the provider's answer is not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2

from switchboard_client.adapters import anthropic as anthropic_adapter
from switchboard_client.adapters import anthropic_bedrock, bedrock, handed_in
from switchboard_client.adapters import openai as openai_adapter
from switchboard_client.api import AsyncRoutingAPI, Complexity, Decision, Model, RoutingAPI
from switchboard_client.errors import Refused, SwitchboardError
from switchboard_client.estimate import estimate_tokens
from switchboard_client.routed import AsyncRoutedCall, RoutedCall
from switchboard_client.streams import AsyncReportingStream, ReportingStream
from switchboard_client.usage import Observation, failure_for

logger = logging.getLogger("switchboard_client")

Helper = Literal["messages", "chat_completions", "converse"]
MAX_SKIPPED = 50


@dataclass
class _Call:
    """One helper call: which API, its parameters, and what to route with."""

    helper: Helper
    params: dict[str, Any]
    stream: bool
    route: dict[str, Any]
    exclude: list[str] = field(default_factory=list)

    @property
    def estimated_input(self) -> int:
        return int(self.route.get("estimated_input_tokens") or 0)


def speaks(helper: Helper, model: Model) -> bool:
    """Whether a helper can call this model: `messages` Anthropic models and Bedrock models of the Anthropic family,
    `chat_completions` OpenAI and OpenAI-compatible ones, `converse` any Bedrock model."""
    if helper == "messages":
        return model.kind in anthropic_adapter.KINDS or (
            model.kind in bedrock.KINDS and anthropic_bedrock.family_is_anthropic(model.invoke_id, model.model_id))
    if helper == "chat_completions":
        return model.kind in openai_adapter.KINDS
    return model.kind in bedrock.KINDS


def _route_args(category: str | None, complexity: Complexity | None, tier: str | None, estimated_input_tokens: int,
                estimated_output_tokens: int | None, attempt: int, estimated_cache_read_tokens: int | None) -> dict[str, Any]:
    return {"category": category, "complexity": complexity, "tier": tier, "estimated_input_tokens": estimated_input_tokens,
            "estimated_output_tokens": estimated_output_tokens, "attempt": attempt, "estimated_cache_read_tokens": estimated_cache_read_tokens}


def _attach(response: Any, decision: Decision, report: dict[str, Any] | None) -> Any:
    if isinstance(response, dict):
        response["switchboard_decision"] = decision
        response["switchboard_report"] = report
    else:
        object.__setattr__(response, "switchboard_decision", decision)
        object.__setattr__(response, "switchboard_report", report)
    return response


def _output_estimate(params: Mapping[str, Any]) -> int | None:
    config = params.get("inferenceConfig") or {}
    return config.get("maxTokens")


class Switchboard(RoutingAPI):
    """The synchronous client.

    `url`, `api_key`: Switchboard and a key with scopes `route` and `usage` (and `read`, to name another model that
    answered). `timeout`: seconds for each call to Switchboard (not to providers). `max_attempts`: provider calls a
    helper tries before raising the provider's error. `clients`: SDK clients to use instead of building them from the
    environment, by provider slug or kind (`{"anthropic": Anthropic(...), "zhipu": OpenAI(...), "bedrock":
    boto3.client("bedrock-runtime", ...)}`). `retries`/`backoff`: retries of a Switchboard call that could not be
    answered, waiting backoff x 2^n seconds (jittered).
    """

    def __init__(self, url: str, api_key: str, *, timeout: float = 5.0, max_attempts: int = 3, clients: Mapping[str, Any] | None = None,
                 retries: int = 2, backoff: float = 0.1, catalog_ttl: float = 300.0, http_client: httpx2.Client | None = None) -> None:
        super().__init__(url, api_key, timeout=timeout, retries=retries, backoff=backoff, catalog_ttl=catalog_ttl, http_client=http_client)
        self.max_attempts = max(1, max_attempts)
        self._handed = dict(clients or {})
        self._sdk_clients: dict[tuple[str, str, str | None], Any] = {}
        self._session: Any = None

    def __enter__(self) -> Switchboard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the HTTP client and the SDK clients this client built (not those handed in)."""
        for key, client in self._sdk_clients.items():
            if handed_in(self._handed, key[1], key[0]) is None and hasattr(client, "close"):
                with contextlib.suppress(Exception):
                    client.close()
        self._sdk_clients.clear()
        super().close()

    # The helpers

    def messages(self, *, messages: list[Any], max_tokens: int, category: str | None = None, complexity: Complexity | None = None,
                 tier: str | None = None, estimated_input_tokens: int | None = None, exclude: Iterable[str] = (), attempt: int = 1,
                 stream: bool = False,
                 estimated_cache_read_tokens: int | None = None, **kwargs: Any) -> Any:
        """Anthropic Messages (`anthropic` SDK; Bedrock models of the Anthropic family through Converse, answered as the
        SDK's `Message`). Returns the `Message`, or with `stream=True` a `ReportingStream` of the SDK's raw events."""
        estimate = estimate_tokens(kwargs.get("system"), messages, kwargs.get("tools")) if estimated_input_tokens is None else estimated_input_tokens
        call = _Call("messages", {"messages": messages, "max_tokens": max_tokens, **kwargs}, stream,
                     _route_args(category, complexity, tier, estimate, max_tokens, attempt, estimated_cache_read_tokens), list(exclude))
        return self._run(call)

    def chat_completions(self, *, messages: list[Any], category: str | None = None, complexity: Complexity | None = None,
                         tier: str | None = None, max_tokens: int | None = None, max_completion_tokens: int | None = None,
                         estimated_input_tokens: int | None = None, exclude: Iterable[str] = (), attempt: int = 1, stream: bool = False,
                         estimated_cache_read_tokens: int | None = None, **kwargs: Any) -> Any:
        """OpenAI chat completions (`openai` SDK) at OpenAI or an OpenAI-compatible provider. Returns the
        `ChatCompletion`, or with `stream=True` a `ReportingStream` of its chunks (usage asked for)."""
        params = {"messages": messages, **kwargs}
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        if max_completion_tokens is not None:
            params["max_completion_tokens"] = max_completion_tokens
        estimate = estimate_tokens(messages, kwargs.get("tools")) if estimated_input_tokens is None else estimated_input_tokens
        route = _route_args(category, complexity, tier, estimate, max_completion_tokens or max_tokens, attempt, estimated_cache_read_tokens)
        call = _Call("chat_completions", params, stream, route, list(exclude))
        return self._run(call)

    def converse(self, *, messages: list[Any], category: str | None = None, complexity: Complexity | None = None, tier: str | None = None,
                 estimated_input_tokens: int | None = None, exclude: Iterable[str] = (), attempt: int = 1, stream: bool = False,
                 estimated_cache_read_tokens: int | None = None, **kwargs: Any) -> dict[str, Any]:
        """Bedrock Converse (boto3; ConverseStream with `stream=True`) in the model's region, with its `invoke_id`.
        Keyword arguments are boto3's (`system`, `inferenceConfig`, `toolConfig`, ...). Returns boto3's response dict
        with `switchboard_decision` added; a stream's `"stream"` is a `ReportingStream` of boto3's events."""
        params = {"messages": messages, **kwargs}
        estimate = estimated_input_tokens
        if estimate is None:
            estimate = estimate_tokens(kwargs.get("system"), messages, kwargs.get("toolConfig"))
        route = _route_args(category, complexity, tier, estimate, _output_estimate(kwargs), attempt, estimated_cache_read_tokens)
        call = _Call("converse", params, stream, route, list(exclude))
        return self._run(call)

    def routed(self, category: str | None = None, *, complexity: Complexity | None = None, tier: str | None = None,
               estimated_input_tokens: int | None = None, estimated_output_tokens: int | None = None, exclude: Iterable[str] = (),
               attempt: int = 1, estimated_cache_read_tokens: int | None = None) -> RoutedCall:
        """`with sb.routed(...) as call:` routes when the block starts; see `switchboard_client.routed`."""
        return RoutedCall(self, {"category": category, "complexity": complexity, "tier": tier, "estimated_input_tokens": estimated_input_tokens,
                                 "estimated_output_tokens": estimated_output_tokens, "exclude": tuple(exclude), "attempt": attempt,
                                 "estimated_cache_read_tokens": estimated_cache_read_tokens})

    # The loop

    def _run(self, call: _Call) -> Any:
        attempt = call.route.pop("attempt")
        first_attempt = attempt
        skipped = 0
        last_error: Exception | None = None
        while True:
            try:
                decision = self.route(**call.route, exclude=call.exclude, attempt=attempt)
            except Refused as refusal:
                if last_error is None:
                    raise
                raise refusal from last_error  # the provider failures left nothing to try
            if not speaks(call.helper, decision.model):
                skipped += 1
                self._quietly(self.release, decision)
                call.exclude.append(decision.model.key)
                if skipped > MAX_SKIPPED:
                    raise SwitchboardError(f"{call.helper}: Switchboard keeps choosing models this helper cannot call")
                continue
            try:
                outcome = self._invoke(decision, call)
            except Exception as exc:
                failure = failure_for(exc)
                self._quietly(self.report_failure, decision, failure)
                if failure is None or attempt - first_attempt + 1 >= self.max_attempts:
                    raise
                call.exclude.append(decision.model.key)
                attempt += 1
                last_error = exc
                continue
            if isinstance(outcome, ReportingStream):
                return outcome
            if isinstance(outcome, dict) and isinstance(outcome.get("stream"), ReportingStream):
                outcome["switchboard_decision"] = decision
                return outcome
            response, observation = outcome
            return _attach(response, decision, self._quietly(self.report_observation, decision, observation))

    def _quietly(self, send: Any, *args: Any) -> dict[str, Any] | None:
        try:
            return send(*args)
        except SwitchboardError as exc:
            logger.warning("switchboard_client: could not report decision %s: %s", args[0].id if args else "?", exc)
            return None

    def _client(self, adapter: Any, model: Model) -> Any:
        key = (model.kind, model.provider, model.base_url or model.region)
        if key not in self._sdk_clients:
            handed = handed_in(self._handed, model.provider, model.kind)
            if adapter is bedrock:
                if handed is None and self._session is None:
                    self._session = bedrock.new_session()
                self._sdk_clients[key] = bedrock.make_client(model, session=self._session, handed=handed)
            else:
                self._sdk_clients[key] = adapter.make_client(model, is_async=False, handed=handed)
        return self._sdk_clients[key]

    def _finish(self, decision: Decision) -> Any:
        def finish(observation: Observation, error: BaseException | None) -> dict[str, Any] | None:
            failure = failure_for(error) if error is not None else None
            if failure is not None:
                return self._quietly(self.report_failure, decision, failure, observation.usage)
            return self._quietly(self.report_observation, decision, observation)

        return finish

    def _invoke(self, decision: Decision, call: _Call) -> Any:
        model = decision.model
        if model.kind in bedrock.KINDS:
            client = self._client(bedrock, model)
            request = anthropic_bedrock.to_converse(call.params) if call.helper == "messages" else call.params
            if not call.stream:
                response, observation = bedrock.converse(client, model, request)
                return (anthropic_bedrock.to_message(response, model.invoke_id) if call.helper == "messages" else response), observation
            response = bedrock.open_stream(client, model, request)
            accumulator = bedrock.ConverseAccumulator(call.estimated_input)
            if call.helper == "messages":
                events = anthropic_bedrock.to_message_events(bedrock.events(response), model.invoke_id, response, accumulator.feed)
                return ReportingStream(events, accumulator, decision=decision, finish=self._finish(decision), close=lambda: bedrock.close(response),
                                       response=response, feed=False)
            stream = ReportingStream(bedrock.events(response), accumulator, decision=decision, finish=self._finish(decision),
                                     close=lambda: bedrock.close(response), response=response)
            return {**response, "stream": stream}
        adapter = anthropic_adapter if call.helper == "messages" else openai_adapter
        client = self._client(adapter, model)
        if not call.stream:
            return adapter.create(client, model, call.params)
        sdk_stream = adapter.open_stream(client, model, call.params)
        headers = sdk_stream.response.headers
        accumulator = (anthropic_adapter.MessagesAccumulator(headers) if adapter is anthropic_adapter
                       else openai_adapter.ChunkAccumulator(headers, call.estimated_input))
        return ReportingStream(iter(sdk_stream), accumulator, decision=decision, finish=self._finish(decision), close=sdk_stream.close,
                               response=sdk_stream.response)


class AsyncSwitchboard(AsyncRoutingAPI):
    """The asynchronous client: the same helpers as `Switchboard`, awaited (`await sb.messages(...)`,
    `async for event in await sb.messages(..., stream=True)`, `async with sb.routed(...) as call`). Async SDK clients
    (`AsyncAnthropic`, `AsyncOpenAI`) are built or handed in; Bedrock calls run boto3 in `asyncio.to_thread`, since
    boto3 has no async API. Use `async with AsyncSwitchboard(...)` or `await sb.aclose()`."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 5.0, max_attempts: int = 3, clients: Mapping[str, Any] | None = None,
                 retries: int = 2, backoff: float = 0.1, catalog_ttl: float = 300.0, http_client: httpx2.AsyncClient | None = None) -> None:
        super().__init__(url, api_key, timeout=timeout, retries=retries, backoff=backoff, catalog_ttl=catalog_ttl, http_client=http_client)
        self.max_attempts = max(1, max_attempts)
        self._handed = dict(clients or {})
        self._sdk_clients: dict[tuple[str, str, str | None], Any] = {}
        self._session: Any = None
        self._pending: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> AsyncSwitchboard:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Waits for the reports of abandoned streams, then closes the HTTP client and the SDK clients it built."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        for key, client in self._sdk_clients.items():
            if handed_in(self._handed, key[1], key[0]) is None:
                closer = getattr(client, "close", None)
                with contextlib.suppress(Exception):
                    result = closer() if closer else None
                    if asyncio.iscoroutine(result):
                        await result
        self._sdk_clients.clear()
        await super().aclose()

    def _schedule(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def messages(self, *, messages: list[Any], max_tokens: int, category: str | None = None, complexity: Complexity | None = None,
                       tier: str | None = None, estimated_input_tokens: int | None = None, exclude: Iterable[str] = (), attempt: int = 1,
                       stream: bool = False,
                 estimated_cache_read_tokens: int | None = None, **kwargs: Any) -> Any:
        """See `Switchboard.messages`; a stream is an `AsyncReportingStream`."""
        estimate = estimate_tokens(kwargs.get("system"), messages, kwargs.get("tools")) if estimated_input_tokens is None else estimated_input_tokens
        call = _Call("messages", {"messages": messages, "max_tokens": max_tokens, **kwargs}, stream,
                     _route_args(category, complexity, tier, estimate, max_tokens, attempt, estimated_cache_read_tokens), list(exclude))
        return await self._run(call)

    async def chat_completions(self, *, messages: list[Any], category: str | None = None, complexity: Complexity | None = None,
                               tier: str | None = None, max_tokens: int | None = None, max_completion_tokens: int | None = None,
                               estimated_input_tokens: int | None = None, exclude: Iterable[str] = (), attempt: int = 1, stream: bool = False,
                               estimated_cache_read_tokens: int | None = None, **kwargs: Any) -> Any:
        """See `Switchboard.chat_completions`."""
        params = {"messages": messages, **kwargs}
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        if max_completion_tokens is not None:
            params["max_completion_tokens"] = max_completion_tokens
        estimate = estimate_tokens(messages, kwargs.get("tools")) if estimated_input_tokens is None else estimated_input_tokens
        route = _route_args(category, complexity, tier, estimate, max_completion_tokens or max_tokens, attempt, estimated_cache_read_tokens)
        call = _Call("chat_completions", params, stream, route, list(exclude))
        return await self._run(call)

    async def converse(self, *, messages: list[Any], category: str | None = None, complexity: Complexity | None = None, tier: str | None = None,
                       estimated_input_tokens: int | None = None, exclude: Iterable[str] = (), attempt: int = 1, stream: bool = False,
                       estimated_cache_read_tokens: int | None = None, **kwargs: Any) -> dict[str, Any]:
        """See `Switchboard.converse`; boto3 runs in `asyncio.to_thread`."""
        params = {"messages": messages, **kwargs}
        estimate = estimated_input_tokens
        if estimate is None:
            estimate = estimate_tokens(kwargs.get("system"), messages, kwargs.get("toolConfig"))
        route = _route_args(category, complexity, tier, estimate, _output_estimate(kwargs), attempt, estimated_cache_read_tokens)
        call = _Call("converse", params, stream, route, list(exclude))
        return await self._run(call)

    def routed(self, category: str | None = None, *, complexity: Complexity | None = None, tier: str | None = None,
               estimated_input_tokens: int | None = None, estimated_output_tokens: int | None = None, exclude: Iterable[str] = (),
               attempt: int = 1, estimated_cache_read_tokens: int | None = None) -> AsyncRoutedCall:
        """`async with sb.routed(...) as call:`; see `switchboard_client.routed`."""
        return AsyncRoutedCall(self, {"category": category, "complexity": complexity, "tier": tier, "estimated_input_tokens": estimated_input_tokens,
                                      "estimated_output_tokens": estimated_output_tokens, "exclude": tuple(exclude), "attempt": attempt,
                                 "estimated_cache_read_tokens": estimated_cache_read_tokens})

    async def _run(self, call: _Call) -> Any:
        attempt = call.route.pop("attempt")
        first_attempt = attempt
        skipped = 0
        last_error: Exception | None = None
        while True:
            try:
                decision = await self.route(**call.route, exclude=call.exclude, attempt=attempt)
            except Refused as refusal:
                if last_error is None:
                    raise
                raise refusal from last_error  # the provider failures left nothing to try
            if not speaks(call.helper, decision.model):
                skipped += 1
                await self._quietly(self.release(decision), decision)
                call.exclude.append(decision.model.key)
                if skipped > MAX_SKIPPED:
                    raise SwitchboardError(f"{call.helper}: Switchboard keeps choosing models this helper cannot call")
                continue
            try:
                outcome = await self._invoke(decision, call)
            except Exception as exc:
                failure = failure_for(exc)
                await self._quietly(self.report_failure(decision, failure), decision)
                if failure is None or attempt - first_attempt + 1 >= self.max_attempts:
                    raise
                call.exclude.append(decision.model.key)
                attempt += 1
                last_error = exc
                continue
            if isinstance(outcome, AsyncReportingStream):
                return outcome
            if isinstance(outcome, dict) and isinstance(outcome.get("stream"), AsyncReportingStream):
                outcome["switchboard_decision"] = decision
                return outcome
            response, observation = outcome
            return _attach(response, decision, await self._quietly(self.report_observation(decision, observation), decision))

    @staticmethod
    async def _quietly(report: Coroutine[Any, Any, dict[str, Any]], decision: Decision) -> dict[str, Any] | None:
        try:
            return await report
        except SwitchboardError as exc:
            logger.warning("switchboard_client: could not report decision %s: %s", decision.id, exc)
            return None

    def _client(self, adapter: Any, model: Model) -> Any:
        key = (model.kind, model.provider, model.base_url or model.region)
        if key not in self._sdk_clients:
            handed = handed_in(self._handed, model.provider, model.kind)
            if adapter is bedrock:
                if handed is None and self._session is None:
                    self._session = bedrock.new_session()
                self._sdk_clients[key] = bedrock.make_client(model, session=self._session, handed=handed)
            else:
                self._sdk_clients[key] = adapter.make_client(model, is_async=True, handed=handed)
        return self._sdk_clients[key]

    def _finish(self, decision: Decision) -> Any:
        async def finish(observation: Observation, error: BaseException | None) -> dict[str, Any] | None:
            failure = failure_for(error) if error is not None else None
            if failure is not None:
                return await self._quietly(self.report_failure(decision, failure, observation.usage), decision)
            return await self._quietly(self.report_observation(decision, observation), decision)

        return finish

    async def _invoke(self, decision: Decision, call: _Call) -> Any:
        model = decision.model
        finish = self._finish(decision)
        if model.kind in bedrock.KINDS:
            client = self._client(bedrock, model)
            request = anthropic_bedrock.to_converse(call.params) if call.helper == "messages" else call.params
            if not call.stream:
                response, observation = await bedrock.aconverse(client, model, request)
                return (anthropic_bedrock.to_message(response, model.invoke_id) if call.helper == "messages" else response), observation
            response = await bedrock.aopen_stream(client, model, request)
            accumulator = bedrock.ConverseAccumulator(call.estimated_input)

            async def close() -> None:
                await asyncio.to_thread(bedrock.close, response)

            if call.helper == "messages":
                events = anthropic_bedrock.ato_message_events(bedrock.aevents(response), model.invoke_id, response, accumulator.feed)
                return AsyncReportingStream(events, accumulator, decision=decision, finish=finish, close=close, response=response, feed=False,
                                            schedule=self._schedule)
            stream = AsyncReportingStream(bedrock.aevents(response), accumulator, decision=decision, finish=finish, close=close,
                                          response=response, schedule=self._schedule)
            return {**response, "stream": stream}
        adapter = anthropic_adapter if call.helper == "messages" else openai_adapter
        client = self._client(adapter, model)
        if not call.stream:
            return await adapter.acreate(client, model, call.params)
        sdk_stream = await adapter.aopen_stream(client, model, call.params)
        headers = sdk_stream.response.headers
        accumulator = (anthropic_adapter.MessagesAccumulator(headers) if adapter is anthropic_adapter
                       else openai_adapter.ChunkAccumulator(headers, call.estimated_input))
        return AsyncReportingStream(sdk_stream.__aiter__(), accumulator, decision=decision, finish=finish, close=sdk_stream.close,
                                    response=sdk_stream.response, schedule=self._schedule)


__all__ = ["AsyncSwitchboard", "Switchboard", "speaks"]
