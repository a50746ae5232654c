"""`Switchboard` and `AsyncSwitchboard`: route, call the chosen model with its official SDK, report, and on a
provider failure report it and try the next candidate.

The loop of every helper (`messages`, `chat_completions`, `converse`):

1. route (`estimated_input_tokens`: given, else about 4 characters a token of the request's text;
   `estimated_output_tokens`: the request's max tokens);
2. a model whose API this helper cannot speak (e.g. an OpenAI model for `messages`) is released (reported as
   `not_sent`: its whole reservation given back) and routed past with `exclude`; that is not an attempt;
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
from typing import Any

import httpx2

from switchboard_client.adapters import anthropic_bedrock, bedrock
from switchboard_client.api import AsyncRoutingAPI, Complexity, Decision, RoutingAPI
from switchboard_client.calls import (
    Attempts,
    HelperCall,
    SDKClients,
    attach,
    bedrock_stream,
    chat_completions_call,
    converse_call,
    messages_call,
    routed_args,
    sdk_stream,
    speaks,
)
from switchboard_client.errors import Refused, SwitchboardError
from switchboard_client.routed import AsyncRoutedCall, RoutedCall
from switchboard_client.streams import AsyncReportingStream, ReportingStream
from switchboard_client.usage import Observation, failure_for

logger = logging.getLogger("switchboard_client")


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
        self._sdk_clients = SDKClients(clients, is_async=False)

    def __enter__(self) -> Switchboard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the HTTP client and the SDK clients this client built (not those handed in)."""
        for client in self._sdk_clients.take_built():
            if hasattr(client, "close"):
                with contextlib.suppress(Exception):
                    client.close()
        super().close()

    # The helpers

    def messages(self, *, messages: list[Any], max_tokens: int, category: str | None = None, complexity: Complexity | None = None,
                 tier: str | None = None, estimated_input_tokens: int | None = None, exclude: Iterable[str] = (), attempt: int = 1,
                 stream: bool = False, estimated_cache_read_tokens: int | None = None, **kwargs: Any) -> Any:
        """Anthropic Messages (`anthropic` SDK; Bedrock models of the Anthropic family through Converse, answered as the
        SDK's `Message`). Returns the `Message`, or with `stream=True` a `ReportingStream` of the SDK's raw events."""
        return self._run(messages_call(messages=messages, max_tokens=max_tokens, category=category, complexity=complexity, tier=tier,
                                       estimated_input_tokens=estimated_input_tokens, exclude=exclude, attempt=attempt, stream=stream,
                                       estimated_cache_read_tokens=estimated_cache_read_tokens, kwargs=kwargs))

    def chat_completions(self, *, messages: list[Any], category: str | None = None, complexity: Complexity | None = None,
                         tier: str | None = None, max_tokens: int | None = None, max_completion_tokens: int | None = None,
                         estimated_input_tokens: int | None = None, exclude: Iterable[str] = (), attempt: int = 1, stream: bool = False,
                         estimated_cache_read_tokens: int | None = None, **kwargs: Any) -> Any:
        """OpenAI chat completions (`openai` SDK) at OpenAI or an OpenAI-compatible provider. Returns the
        `ChatCompletion`, or with `stream=True` a `ReportingStream` of its chunks (usage asked for)."""
        return self._run(chat_completions_call(
            messages=messages, category=category, complexity=complexity, tier=tier, max_tokens=max_tokens,
            max_completion_tokens=max_completion_tokens, estimated_input_tokens=estimated_input_tokens, exclude=exclude, attempt=attempt,
            stream=stream, estimated_cache_read_tokens=estimated_cache_read_tokens, kwargs=kwargs))

    def converse(self, *, messages: list[Any], category: str | None = None, complexity: Complexity | None = None, tier: str | None = None,
                 estimated_input_tokens: int | None = None, exclude: Iterable[str] = (), attempt: int = 1, stream: bool = False,
                 estimated_cache_read_tokens: int | None = None, **kwargs: Any) -> dict[str, Any]:
        """Bedrock Converse (boto3; ConverseStream with `stream=True`) in the model's region, with its `invoke_id`.
        Keyword arguments are boto3's (`system`, `inferenceConfig`, `toolConfig`, ...). Returns boto3's response dict
        with `switchboard_decision` added; a stream's `"stream"` is a `ReportingStream` of boto3's events."""
        return self._run(converse_call(messages=messages, category=category, complexity=complexity, tier=tier,
                                       estimated_input_tokens=estimated_input_tokens, exclude=exclude, attempt=attempt, stream=stream,
                                       estimated_cache_read_tokens=estimated_cache_read_tokens, kwargs=kwargs))

    def routed(self, category: str | None = None, *, complexity: Complexity | None = None, tier: str | None = None,
               estimated_input_tokens: int | None = None, estimated_output_tokens: int | None = None, exclude: Iterable[str] = (),
               attempt: int = 1, estimated_cache_read_tokens: int | None = None) -> RoutedCall:
        """`with sb.routed(...) as call:` routes when the block starts; see `switchboard_client.routed`."""
        return RoutedCall(self, routed_args(category=category, complexity=complexity, tier=tier, estimated_input_tokens=estimated_input_tokens,
                                            estimated_output_tokens=estimated_output_tokens, exclude=exclude, attempt=attempt,
                                            estimated_cache_read_tokens=estimated_cache_read_tokens))

    # The loop

    def _run(self, call: HelperCall) -> Any:
        attempts = Attempts(call, self.max_attempts)
        while True:
            try:
                decision = self.route(**attempts.route_args())
            except Refused as refusal:
                raise attempts.refused(refusal)  # noqa: B904 (the cause is the last provider failure, if any)
            if not speaks(call.helper, decision.model):
                self._quietly(self.release, decision)
                attempts.skip(decision)
                continue
            try:
                response, observation = self._invoke(decision, call)
            except Exception as exc:
                failure = failure_for(exc)
                self._quietly(self.report_failure, decision, failure)
                if not attempts.retry(decision, failure, exc):
                    raise
                continue
            if observation is None:  # a stream: it reports when it ends
                return response
            return attach(response, decision, self._quietly(self.report_observation, decision, observation))

    def _quietly(self, send: Any, *args: Any) -> dict[str, Any] | None:
        try:
            return send(*args)
        except SwitchboardError as exc:
            logger.warning("switchboard_client: could not report decision %s: %s", args[0].id if args else "?", exc)
            return None

    def _finish(self, decision: Decision) -> Any:
        def finish(observation: Observation, error: BaseException | None) -> dict[str, Any] | None:
            failure = failure_for(error) if error is not None else None
            if failure is not None:
                return self._quietly(self.report_failure, decision, failure, observation.usage)
            return self._quietly(self.report_observation, decision, observation)

        return finish

    def _invoke(self, decision: Decision, call: HelperCall) -> tuple[Any, Observation | None]:
        model = decision.model
        if model.kind in bedrock.KINDS:
            client = self._sdk_clients.for_model(bedrock, model)
            if not call.stream:
                response, observation = bedrock.converse(client, model, call.bedrock_request())
                return call.bedrock_answer(response, model), observation
            response = bedrock.open_stream(client, model, call.bedrock_request())
            return bedrock_stream(call, decision, response, ReportingStream, bedrock.events, anthropic_bedrock.to_message_events,
                                  finish=self._finish(decision), close=lambda: bedrock.close(response)), None
        adapter = call.sdk_adapter
        client = self._sdk_clients.for_model(adapter, model)
        if not call.stream:
            return adapter.create(client, model, call.params)
        opened = adapter.open_stream(client, model, call.params)
        return sdk_stream(call, decision, opened, ReportingStream, iter(opened), finish=self._finish(decision)), None


class AsyncSwitchboard(AsyncRoutingAPI):
    """The asynchronous client: the same helpers as `Switchboard`, awaited (`await sb.messages(...)`,
    `async for event in await sb.messages(..., stream=True)`, `async with sb.routed(...) as call`). Async SDK clients
    (`AsyncAnthropic`, `AsyncOpenAI`) are built or handed in; Bedrock calls run boto3 in `asyncio.to_thread`, since
    boto3 has no async API. Use `async with AsyncSwitchboard(...)` or `await sb.aclose()`."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 5.0, max_attempts: int = 3, clients: Mapping[str, Any] | None = None,
                 retries: int = 2, backoff: float = 0.1, catalog_ttl: float = 300.0, http_client: httpx2.AsyncClient | None = None) -> None:
        super().__init__(url, api_key, timeout=timeout, retries=retries, backoff=backoff, catalog_ttl=catalog_ttl, http_client=http_client)
        self.max_attempts = max(1, max_attempts)
        self._sdk_clients = SDKClients(clients, is_async=True)
        self._pending: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> AsyncSwitchboard:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Waits for the reports of abandoned streams, then closes the HTTP client and the SDK clients it built."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        for client in self._sdk_clients.take_built():
            closer = getattr(client, "close", None)
            with contextlib.suppress(Exception):
                result = closer() if closer else None
                if asyncio.iscoroutine(result):
                    await result
        await super().aclose()

    def _schedule(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def messages(self, *, messages: list[Any], max_tokens: int, category: str | None = None, complexity: Complexity | None = None,
                       tier: str | None = None, estimated_input_tokens: int | None = None, exclude: Iterable[str] = (), attempt: int = 1,
                       stream: bool = False, estimated_cache_read_tokens: int | None = None, **kwargs: Any) -> Any:
        """See `Switchboard.messages`; a stream is an `AsyncReportingStream`."""
        return await self._run(messages_call(messages=messages, max_tokens=max_tokens, category=category, complexity=complexity, tier=tier,
                                             estimated_input_tokens=estimated_input_tokens, exclude=exclude, attempt=attempt, stream=stream,
                                             estimated_cache_read_tokens=estimated_cache_read_tokens, kwargs=kwargs))

    async def chat_completions(self, *, messages: list[Any], category: str | None = None, complexity: Complexity | None = None,
                               tier: str | None = None, max_tokens: int | None = None, max_completion_tokens: int | None = None,
                               estimated_input_tokens: int | None = None, exclude: Iterable[str] = (), attempt: int = 1, stream: bool = False,
                               estimated_cache_read_tokens: int | None = None, **kwargs: Any) -> Any:
        """See `Switchboard.chat_completions`."""
        return await self._run(chat_completions_call(
            messages=messages, category=category, complexity=complexity, tier=tier, max_tokens=max_tokens,
            max_completion_tokens=max_completion_tokens, estimated_input_tokens=estimated_input_tokens, exclude=exclude, attempt=attempt,
            stream=stream, estimated_cache_read_tokens=estimated_cache_read_tokens, kwargs=kwargs))

    async def converse(self, *, messages: list[Any], category: str | None = None, complexity: Complexity | None = None, tier: str | None = None,
                       estimated_input_tokens: int | None = None, exclude: Iterable[str] = (), attempt: int = 1, stream: bool = False,
                       estimated_cache_read_tokens: int | None = None, **kwargs: Any) -> dict[str, Any]:
        """See `Switchboard.converse`; boto3 runs in `asyncio.to_thread`."""
        return await self._run(converse_call(messages=messages, category=category, complexity=complexity, tier=tier,
                                             estimated_input_tokens=estimated_input_tokens, exclude=exclude, attempt=attempt, stream=stream,
                                             estimated_cache_read_tokens=estimated_cache_read_tokens, kwargs=kwargs))

    def routed(self, category: str | None = None, *, complexity: Complexity | None = None, tier: str | None = None,
               estimated_input_tokens: int | None = None, estimated_output_tokens: int | None = None, exclude: Iterable[str] = (),
               attempt: int = 1, estimated_cache_read_tokens: int | None = None) -> AsyncRoutedCall:
        """`async with sb.routed(...) as call:`; see `switchboard_client.routed`."""
        return AsyncRoutedCall(self, routed_args(category=category, complexity=complexity, tier=tier,
                                                 estimated_input_tokens=estimated_input_tokens, estimated_output_tokens=estimated_output_tokens,
                                                 exclude=exclude, attempt=attempt, estimated_cache_read_tokens=estimated_cache_read_tokens))

    async def _run(self, call: HelperCall) -> Any:
        attempts = Attempts(call, self.max_attempts)
        while True:
            try:
                decision = await self.route(**attempts.route_args())
            except Refused as refusal:
                raise attempts.refused(refusal)  # noqa: B904 (the cause is the last provider failure, if any)
            if not speaks(call.helper, decision.model):
                await self._quietly(self.release(decision), decision)
                attempts.skip(decision)
                continue
            try:
                response, observation = await self._invoke(decision, call)
            except Exception as exc:
                failure = failure_for(exc)
                await self._quietly(self.report_failure(decision, failure), decision)
                if not attempts.retry(decision, failure, exc):
                    raise
                continue
            if observation is None:  # a stream: it reports when it ends
                return response
            return attach(response, decision, await self._quietly(self.report_observation(decision, observation), decision))

    @staticmethod
    async def _quietly(report: Coroutine[Any, Any, dict[str, Any]], decision: Decision) -> dict[str, Any] | None:
        try:
            return await report
        except SwitchboardError as exc:
            logger.warning("switchboard_client: could not report decision %s: %s", decision.id, exc)
            return None

    def _finish(self, decision: Decision) -> Any:
        async def finish(observation: Observation, error: BaseException | None) -> dict[str, Any] | None:
            failure = failure_for(error) if error is not None else None
            if failure is not None:
                return await self._quietly(self.report_failure(decision, failure, observation.usage), decision)
            return await self._quietly(self.report_observation(decision, observation), decision)

        return finish

    async def _invoke(self, decision: Decision, call: HelperCall) -> tuple[Any, Observation | None]:
        model = decision.model
        options = {"finish": self._finish(decision), "schedule": self._schedule}
        if model.kind in bedrock.KINDS:
            client = self._sdk_clients.for_model(bedrock, model)
            if not call.stream:
                response, observation = await bedrock.aconverse(client, model, call.bedrock_request())
                return call.bedrock_answer(response, model), observation
            response = await bedrock.aopen_stream(client, model, call.bedrock_request())

            async def close() -> None:
                await asyncio.to_thread(bedrock.close, response)

            return bedrock_stream(call, decision, response, AsyncReportingStream, bedrock.aevents, anthropic_bedrock.ato_message_events,
                                  close=close, **options), None
        adapter = call.sdk_adapter
        client = self._sdk_clients.for_model(adapter, model)
        if not call.stream:
            return await adapter.acreate(client, model, call.params)
        opened = await adapter.aopen_stream(client, model, call.params)
        return sdk_stream(call, decision, opened, AsyncReportingStream, opened.__aiter__(), **options), None


__all__ = ["AsyncSwitchboard", "Switchboard", "speaks"]
