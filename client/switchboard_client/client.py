"""`Switchboard` and `AsyncSwitchboard`: route, call the chosen model with its official SDK, report, and on a
provider failure report it and try the next candidate.

The loop of every helper (`messages`, `chat_completions`, `converse`):

1. route (`estimated_input_tokens`: given, else about 4 characters a token of the request's text;
   `estimated_output_tokens`: the request's max tokens; `apis`: the provider kinds the helper can call, so that
   Switchboard passes the others over without reserving them). With `fail_open=`, when Switchboard cannot answer,
   the call's default model is called instead and its reports are queued (switchboard_client.failopen);
2. a Bedrock model outside the Anthropic family chosen for `messages` (which speaks only Claude on Bedrock) is
   released (reported as `not_sent`: its whole reservation given back) and routed past with `exclude`; that is not
   an attempt;
3. call it; on success report usage, cache tokens, the answering model and the rate-limit headers, and return the
   SDK's own response with `switchboard_decision` (and `switchboard_report`, the usage event) attached as attributes
   (keys of the dict for boto3's Converse response);
4. on a provider 429, 404, 5xx, timeout or refused connection: report it (`rate_limited`, `not_found`, `error`, with
   the provider's retry-after), then route again with the model in `exclude` and `attempt` + 1, up to
   `max_attempts` tries; the last failure is raised as the SDK raised it (a refusal that ends the tries names it and
   has it as its `__cause__`). Any other error (a 400, bad credentials) is the caller's: the decision is reported as
   used nothing and the error raised as it is;
5. on a route that never falls back, a provider 429 is waited out instead (its retry-after, if under `backoff_cap`)
   and the same model tried again as the next attempt; then `RateLimited` is raised with the provider's retry-after.
   A refusal of such a route because the provider asked its primary to wait (a cooldown from a reported
   retry-after, rate-limit headers) is waited out the same way when Switchboard's Retry-After is under the cap.

`sb.chat(...)` runs the same loop with one neutral request, sent in the words of whichever API the chosen model
speaks (switchboard_client.chat).

One `Switchboard` may be shared by any number of threads: its HTTP client is thread-safe, SDK clients are built once
under a lock, and what it learns (model catalog, fail-open defaults, queued reports) is kept under locks or replaced
whole. Use one `AsyncSwitchboard` per event loop.

Reports that fail (Switchboard unreachable) are logged, never raised by the helpers: the provider's answer is not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import replace
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
    chat_call,
    chat_completions_call,
    converse_call,
    messages_call,
    routed_args,
    sdk_stream,
    speaks,
)
from switchboard_client.chat import AsyncChatStream, ChatRequest, ChatStream, chat_response
from switchboard_client.errors import FailedFast, Refused, SwitchboardError, Unavailable
from switchboard_client.failopen import FailOpen, FailOpenState
from switchboard_client.routed import AsyncRoutedCall, RoutedCall
from switchboard_client.streams import AsyncReportingStream, ReportingStream
from switchboard_client.usage import Failure, Observation, failure_for

logger = logging.getLogger("switchboard_client")


def _without_headers(failure: Failure | None) -> Failure | None:
    """A 429 about to be waited out, reported with its retry-after but not its rate-limit headers: the retry-after is
    the provider's own word on when the same model may be called again, while the headers' reset times say when its
    limits are full again, which would hold the model back far longer."""
    return replace(failure, ratelimit_headers={}) if failure is not None else None


def _events_of(response: Any) -> Any:
    """A helper's stream: itself, or the `"stream"` of a Converse stream's response dict."""
    return response["stream"] if isinstance(response, dict) else response


class _Shared:
    """What both clients hold besides the API: their options, fail-open state and what they learn about routes."""

    _fail_open: FailOpenState | None
    catalog_ttl: float

    def _setup(self, *, max_attempts: int, fail_open: bool | FailOpen, backoff_cap: float) -> None:
        self.max_attempts = max(1, max_attempts)
        self.backoff_cap = backoff_cap
        self._fail_open = FailOpenState(FailOpen() if fail_open is True else fail_open) if fail_open else None
        self._fallback_rules: dict[tuple[Any, ...], tuple[bool, float]] = {}

    @property
    def queued_reports(self) -> int:
        """Usage reports queued while failing open, not yet sent."""
        return self._fail_open.queued if self._fail_open is not None else 0

    def _open_decision(self, route: dict[str, Any], error: Exception | None) -> Decision | None:
        """The fail-open decision for a call Switchboard could not route (None: fail closed)."""
        if self._fail_open is None:
            return None
        if error is not None:
            self._fail_open.mark_down()
        return self._fail_open.decision(route, error or Unavailable("Switchboard did not answer a moment ago"))

    def _known_rule(self, attempts: Attempts) -> bool | None:
        rule = self._fallback_rules.get((attempts.route_key, attempts.call.route.get("apis")))
        if rule is not None and time.monotonic() - rule[1] < self.catalog_ttl:
            return rule[0]
        return None

    def _probe_args(self, attempts: Attempts, decision: Decision) -> dict[str, Any]:
        return {**attempts.route_args(), "exclude": [*attempts.call.exclude, decision.model.key], "dry_run": True}

    def _learn_rule(self, attempts: Attempts, decision: Decision, refusal: Exception | None) -> bool:
        """Whether the route never falls back, from a dry run past the model: a FailedFast whose trace excluded it."""
        never = isinstance(refusal, FailedFast) and any(
            (entry.get("model") or {}).get("key") == decision.model.key and entry.get("cause") == "excluded" for entry in refusal.trace)
        self._fallback_rules[(attempts.route_key, attempts.call.route.get("apis"))] = (never, time.monotonic())
        return never

    @staticmethod
    def _answer(call: HelperCall, decision: Decision, response: Any, observation: Any, report: dict[str, Any] | None) -> Any:
        if call.chat is not None:
            return chat_response(decision, response, observation, report, decision.fail_open)
        return attach(response, decision, report)


class Switchboard(_Shared, RoutingAPI):
    """The synchronous client.

    `url`, `api_key`: Switchboard and a key with scopes `route` and `usage` (and `read`, to name another model that
    answered). `timeout`: seconds for each call to Switchboard (not to providers). `max_attempts`: provider calls a
    helper tries before raising the provider's error. `clients`: SDK clients to use instead of building them from the
    environment, by provider slug or kind (`{"anthropic": Anthropic(...), "zhipu": OpenAI(...), "bedrock":
    boto3.client("bedrock-runtime", ...)}`). `retries`/`backoff`: retries of a Switchboard call that could not be
    answered, waiting backoff x 2^n seconds (jittered). `fail_open`: `True` or a `FailOpen` to keep serving on a
    default model when Switchboard cannot answer (default: fail closed, raising `Unavailable`). `backoff_cap`: the
    longest provider retry-after waited out on a route that never falls back (seconds).
    """

    def __init__(self, url: str, api_key: str, *, timeout: float = 5.0, max_attempts: int = 3, clients: Mapping[str, Any] | None = None,
                 retries: int = 2, backoff: float = 0.1, catalog_ttl: float = 300.0, http_client: httpx2.Client | None = None,
                 fail_open: bool | FailOpen = False, backoff_cap: float = 20.0) -> None:
        super().__init__(url, api_key, timeout=timeout, retries=retries, backoff=backoff, catalog_ttl=catalog_ttl, http_client=http_client)
        self._setup(max_attempts=max_attempts, fail_open=fail_open, backoff_cap=backoff_cap)
        self._sdk_clients = SDKClients(clients, is_async=False)
        self._flush_lock = threading.Lock()

    def __enter__(self) -> Switchboard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Sends any reports queued while failing open (if Switchboard answers), then closes the HTTP client and the
        SDK clients this client built (not those handed in)."""
        if self.queued_reports:
            self.flush_reports()
        for client in self._sdk_clients.take_built():
            if hasattr(client, "close"):
                with contextlib.suppress(Exception):
                    client.close()
        super().close()

    def flush_reports(self) -> int:
        """Sends the usage reports queued while failing open now (the client also does so, in a background thread,
        once Switchboard answers again); returns how many were sent."""
        with self._flush_lock:
            return super().flush_reports()

    # The helpers

    def messages(self, *, messages: list[Any], max_tokens: int, category: str | None = None, complexity: Complexity | None = None,
                 tier: str | None = None, estimated_input_tokens: int | None = None, exclude: Iterable[str] = (), attempt: int = 1,
                 stream: bool = False, estimated_cache_read_tokens: int | None = None, **kwargs: Any) -> Any:
        """Anthropic Messages (`anthropic` SDK; Bedrock models of the Anthropic family through Converse, answered as the
        SDK's `Message`). Returns the `Message`, or with `stream=True` a `ReportingStream` of the SDK's raw events
        (with `text_stream` and `get_final_message()`)."""
        return self._run(messages_call(messages=messages, max_tokens=max_tokens, category=category, complexity=complexity, tier=tier,
                                       estimated_input_tokens=estimated_input_tokens, exclude=exclude, attempt=attempt, stream=stream,
                                       estimated_cache_read_tokens=estimated_cache_read_tokens, kwargs=kwargs))

    def chat_completions(self, *, messages: list[Any], category: str | None = None, complexity: Complexity | None = None,
                         tier: str | None = None, max_tokens: int | None = None, max_completion_tokens: int | None = None,
                         estimated_input_tokens: int | None = None, exclude: Iterable[str] = (), attempt: int = 1, stream: bool = False,
                         estimated_cache_read_tokens: int | None = None, **kwargs: Any) -> Any:
        """OpenAI chat completions (`openai` SDK) at OpenAI or an OpenAI-compatible provider. Returns the
        `ChatCompletion`, or with `stream=True` a `ReportingStream` of its chunks (usage asked for; `text_stream`,
        `get_final_completion()`)."""
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

    def chat(self, *, messages: list[Any], max_tokens: int, category: str | None = None, complexity: Complexity | None = None,
             tier: str | None = None, system: str | None = None, temperature: float | None = None, top_p: float | None = None,
             stop: str | list[str] | None = None, tools: list[Any] | None = None, tool_choice: Any = None, stream: bool = False,
             estimated_input_tokens: int | None = None, exclude: Iterable[str] = (), attempt: int = 1,
             estimated_cache_read_tokens: int | None = None) -> Any:
        """One call, whichever provider answers: see `switchboard_client.chat` for the request. Returns a
        `ChatResponse`, or with `stream=True` a `ChatStream`."""
        request = ChatRequest.build(messages=messages, max_tokens=max_tokens, system=system, temperature=temperature, top_p=top_p,
                                    stop=stop, tools=tools, tool_choice=tool_choice)
        return self._run(chat_call(request=request, category=category, complexity=complexity, tier=tier,
                                   estimated_input_tokens=estimated_input_tokens, exclude=exclude, attempt=attempt, stream=stream,
                                   estimated_cache_read_tokens=estimated_cache_read_tokens, apis=self._sdk_clients.chat_apis()))

    def routed(self, category: str | None = None, *, complexity: Complexity | None = None, tier: str | None = None,
               estimated_input_tokens: int | None = None, estimated_output_tokens: int | None = None, exclude: Iterable[str] = (),
               attempt: int = 1, estimated_cache_read_tokens: int | None = None, apis: Iterable[str] | None = None) -> RoutedCall:
        """`with sb.routed(...) as call:` routes when the block starts; see `switchboard_client.routed`. `apis`: the
        provider kinds the block can call."""
        return RoutedCall(self, routed_args(category=category, complexity=complexity, tier=tier, estimated_input_tokens=estimated_input_tokens,
                                            estimated_output_tokens=estimated_output_tokens, exclude=exclude, attempt=attempt,
                                            estimated_cache_read_tokens=estimated_cache_read_tokens, apis=apis))

    # The loop

    def decide(self, route: dict[str, Any]) -> Decision:
        """`route(**route)`, or with fail-open a decision for the default model when Switchboard cannot answer."""
        if self._fail_open is not None and self._fail_open.is_down():
            opened = self._open_decision(route, None)
            if opened is not None:
                return opened
        try:
            decision = self.route(**route)
        except Unavailable as exc:
            opened = self._open_decision(route, exc)
            if opened is None:
                raise
            return opened
        if self._fail_open is not None:
            self._fail_open.learn(route, decision)
            if self._fail_open.queued or self._fail_open.dropped:
                threading.Thread(target=self.flush_reports, name="switchboard-client-flush", daemon=True).start()
        return decision

    def _run(self, call: HelperCall) -> Any:
        attempts = Attempts(call, self.max_attempts, self.backoff_cap)
        while True:
            try:
                decision = self.decide(attempts.route_args())
            except Refused as refusal:
                wait = attempts.wait_out(refusal)
                if wait is None:
                    raise attempts.refused(refusal)  # noqa: B904 (the cause is the last provider failure, if any)
                time.sleep(wait)
                continue
            if not speaks(call.helper, decision.model):
                self._quietly(self.release, decision)
                attempts.skip(decision)
                continue
            sent = call.for_model(decision.model)
            try:
                response, observation = self._invoke(decision, sent)
            except Exception as exc:
                failure = failure_for(exc)
                backing_off = failure is not None and failure.status == "rate_limited" and self._never_falls_back(attempts, decision)
                self._quietly(self.report_failure, decision, _without_headers(failure) if backing_off else failure)
                if backing_off:
                    assert failure is not None
                    time.sleep(attempts.back_off(decision, failure, exc))
                    continue
                if not attempts.retry(decision, failure, exc):
                    raise
                continue
            if observation is None:  # a stream: it reports when it ends
                return ChatStream(_events_of(response), decision, decision.fail_open) if call.chat is not None else response
            return self._answer(call, decision, response, observation, self._quietly(self.report_observation, decision, observation))

    def _never_falls_back(self, attempts: Attempts, decision: Decision) -> bool:
        if decision.fail_open:
            return False
        known = self._known_rule(attempts)
        if known is not None:
            return known
        try:
            self.route(**self._probe_args(attempts, decision))
        except SwitchboardError as refusal:
            return self._learn_rule(attempts, decision, refusal)
        return self._learn_rule(attempts, decision, None)

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


class AsyncSwitchboard(_Shared, AsyncRoutingAPI):
    """The asynchronous client: the same helpers as `Switchboard`, awaited (`await sb.messages(...)`,
    `async for event in await sb.messages(..., stream=True)`, `async with sb.routed(...) as call`). Async SDK clients
    (`AsyncAnthropic`, `AsyncOpenAI`) are built or handed in; Bedrock calls run boto3 in `asyncio.to_thread`, since
    boto3 has no async API. Use `async with AsyncSwitchboard(...)` or `await sb.aclose()`, and one per event loop."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 5.0, max_attempts: int = 3, clients: Mapping[str, Any] | None = None,
                 retries: int = 2, backoff: float = 0.1, catalog_ttl: float = 300.0, http_client: httpx2.AsyncClient | None = None,
                 fail_open: bool | FailOpen = False, backoff_cap: float = 20.0) -> None:
        super().__init__(url, api_key, timeout=timeout, retries=retries, backoff=backoff, catalog_ttl=catalog_ttl, http_client=http_client)
        self._setup(max_attempts=max_attempts, fail_open=fail_open, backoff_cap=backoff_cap)
        self._sdk_clients = SDKClients(clients, is_async=True)
        self._pending: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> AsyncSwitchboard:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Waits for the reports of abandoned streams and sends those queued while failing open (if Switchboard
        answers), then closes the HTTP client and the SDK clients it built."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self.queued_reports:
            await self.flush_reports()
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

    async def chat(self, *, messages: list[Any], max_tokens: int, category: str | None = None, complexity: Complexity | None = None,
                   tier: str | None = None, system: str | None = None, temperature: float | None = None, top_p: float | None = None,
                   stop: str | list[str] | None = None, tools: list[Any] | None = None, tool_choice: Any = None, stream: bool = False,
                   estimated_input_tokens: int | None = None, exclude: Iterable[str] = (), attempt: int = 1,
                   estimated_cache_read_tokens: int | None = None) -> Any:
        """See `Switchboard.chat`; a stream is an `AsyncChatStream`."""
        request = ChatRequest.build(messages=messages, max_tokens=max_tokens, system=system, temperature=temperature, top_p=top_p,
                                    stop=stop, tools=tools, tool_choice=tool_choice)
        return await self._run(chat_call(request=request, category=category, complexity=complexity, tier=tier,
                                         estimated_input_tokens=estimated_input_tokens, exclude=exclude, attempt=attempt, stream=stream,
                                         estimated_cache_read_tokens=estimated_cache_read_tokens, apis=self._sdk_clients.chat_apis()))

    def routed(self, category: str | None = None, *, complexity: Complexity | None = None, tier: str | None = None,
               estimated_input_tokens: int | None = None, estimated_output_tokens: int | None = None, exclude: Iterable[str] = (),
               attempt: int = 1, estimated_cache_read_tokens: int | None = None, apis: Iterable[str] | None = None) -> AsyncRoutedCall:
        """`async with sb.routed(...) as call:`; see `switchboard_client.routed`."""
        return AsyncRoutedCall(self, routed_args(category=category, complexity=complexity, tier=tier,
                                                 estimated_input_tokens=estimated_input_tokens, estimated_output_tokens=estimated_output_tokens,
                                                 exclude=exclude, attempt=attempt, estimated_cache_read_tokens=estimated_cache_read_tokens,
                                                 apis=apis))

    async def decide(self, route: dict[str, Any]) -> Decision:
        """See `Switchboard.decide`."""
        if self._fail_open is not None and self._fail_open.is_down():
            opened = self._open_decision(route, None)
            if opened is not None:
                return opened
        try:
            decision = await self.route(**route)
        except Unavailable as exc:
            opened = self._open_decision(route, exc)
            if opened is None:
                raise
            return opened
        if self._fail_open is not None:
            self._fail_open.learn(route, decision)
            if self._fail_open.queued or self._fail_open.dropped:
                self._schedule(self.flush_reports())
        return decision

    async def _run(self, call: HelperCall) -> Any:
        attempts = Attempts(call, self.max_attempts, self.backoff_cap)
        while True:
            try:
                decision = await self.decide(attempts.route_args())
            except Refused as refusal:
                wait = attempts.wait_out(refusal)
                if wait is None:
                    raise attempts.refused(refusal)  # noqa: B904 (the cause is the last provider failure, if any)
                await asyncio.sleep(wait)
                continue
            if not speaks(call.helper, decision.model):
                await self._quietly(self.release(decision), decision)
                attempts.skip(decision)
                continue
            sent = call.for_model(decision.model)
            try:
                response, observation = await self._invoke(decision, sent)
            except Exception as exc:
                failure = failure_for(exc)
                backing_off = failure is not None and failure.status == "rate_limited" and await self._never_falls_back(attempts, decision)
                await self._quietly(self.report_failure(decision, _without_headers(failure) if backing_off else failure), decision)
                if backing_off:
                    assert failure is not None
                    await asyncio.sleep(attempts.back_off(decision, failure, exc))
                    continue
                if not attempts.retry(decision, failure, exc):
                    raise
                continue
            if observation is None:  # a stream: it reports when it ends
                return AsyncChatStream(_events_of(response), decision, decision.fail_open) if call.chat is not None else response
            report = await self._quietly(self.report_observation(decision, observation), decision)
            return self._answer(call, decision, response, observation, report)

    async def _never_falls_back(self, attempts: Attempts, decision: Decision) -> bool:
        if decision.fail_open:
            return False
        known = self._known_rule(attempts)
        if known is not None:
            return known
        try:
            await self.route(**self._probe_args(attempts, decision))
        except SwitchboardError as refusal:
            return self._learn_rule(attempts, decision, refusal)
        return self._learn_rule(attempts, decision, None)

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
