"""Streams that report when they end: the SDK's stream (or boto3's event stream) is passed through event by event
while its usage is read; the report is sent once, when the stream is read to its end, closed early, fails, or is
garbage collected unread (abandoned). A stream that ends without the provider's final usage (closed early) reports
the usage seen so far, its output estimated from the text received.

Like the SDKs' own streams, a reporting stream also offers `text_stream` (the text deltas only) and the final answer
built from its events with the SDK's own accumulators (`get_final_message()`: anthropic's `Message` or boto3's
Converse dict; `get_final_completion()`: openai's `ChatCompletion`), and `on_end` callbacks run once it has ended,
however it ended."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, Generic, Protocol, TypeVar

from switchboard_client.api import Decision
from switchboard_client.usage import Observation

logger = logging.getLogger("switchboard_client")
T = TypeVar("T")


class Accumulator(Protocol):
    """Reads one provider's stream events; `observation()` is what they said so far."""

    def feed(self, event: Any) -> None: ...

    def observation(self) -> Observation: ...


class Collector(Protocol):
    """Builds the final answer of one API's stream from its events (see switchboard_client.finals)."""

    def feed(self, event: Any) -> None: ...

    def final(self) -> Any: ...

    def text(self, event: Any) -> str | None: ...


Finish = Callable[[Observation, "BaseException | None"], "dict[str, Any] | None"]
EndCallback = Callable[["ReportingStream[Any] | AsyncReportingStream[Any]", "BaseException | None"], Any]


class _Reporting:
    """What a reporting stream holds, sync or async: the routing decision, the report once sent, the provider's
    response, and what the events said so far."""

    def __init__(self, accumulator: Accumulator, decision: Decision, response: Any, feed: bool, collector: Collector | None) -> None:
        self._accumulator = accumulator
        self._feed = feed
        self._collector = collector
        self._done = False
        self._end_callbacks: list[EndCallback] = []
        self.error: BaseException | None = None
        """The exception that ended the stream, if one did."""
        self.switchboard_decision = decision
        self.switchboard_report: dict[str, Any] | None = None
        self.response = response

    def on_end(self, callback: EndCallback) -> None:
        """Calls `callback(stream, error)` once the stream has ended and been reported (error: what ended it, or None);
        at once if it already has. An exception raised by the callback is logged, not raised."""
        if self._done:
            self._call(callback)
        else:
            self._end_callbacks.append(callback)

    def _call(self, callback: EndCallback) -> Any:
        try:
            return callback(self, self.error)  # type: ignore[arg-type]
        except Exception:
            logger.exception("switchboard_client: a stream's on_end callback failed")
            return None

    def _final(self) -> Any:
        if self._collector is None:
            raise TypeError("this stream's events have no final answer to build")
        return self._collector.final()

    @property
    def done(self) -> bool:
        """True once the stream has ended and been reported."""
        return self._done

    @property
    def observation(self) -> Observation:
        """What the stream said so far: usage, answering model, rate-limit headers."""
        return self._accumulator.observation()

    def _read(self, event: T) -> T:
        if self._feed:
            self._accumulator.feed(event)
        if self._collector is not None:
            self._collector.feed(event)
        return event

    def _text(self, event: Any) -> str | None:
        return self._collector.text(event) if self._collector is not None else None


class ReportingStream(_Reporting, Generic[T]):
    """Iterate it (or use it as a context manager) as you would the SDK's stream; it yields the SDK's own events.

    `switchboard_decision` is the routing decision, `switchboard_report` the usage event once reported,
    `response` the provider's HTTP response where the SDK exposes it. Call `close()` to stop early."""

    def __init__(self, events: Iterator[T], accumulator: Accumulator, *, decision: Decision, finish: Finish,
                 close: Callable[[], Any] | None = None, response: Any = None, feed: bool = True, collector: Collector | None = None) -> None:
        super().__init__(accumulator, decision, response, feed, collector)
        self._events = events
        self._finish = finish
        self._close = close

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        try:
            event = next(self._events)
        except StopIteration:
            self._end(None)
            raise
        except BaseException as exc:
            self._end(exc)
            raise
        return self._read(event)

    def _end(self, error: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        self.error = error
        if self._close is not None:
            with contextlib.suppress(Exception):
                self._close()
        self.switchboard_report = self._finish(self._accumulator.observation(), error)
        for callback in self._end_callbacks:
            self._call(callback)

    def close(self) -> None:
        """Stops reading (closing the provider's connection) and reports what was used."""
        self._end(None)

    @property
    def text_stream(self) -> Iterator[str]:
        """The text deltas of the rest of the stream, as the SDKs' `text_stream` (reading it reads the stream)."""
        for event in self:
            text = self._text(event)
            if text:
                yield text

    def until_done(self) -> None:
        """Reads the stream to its end."""
        for _ in self:
            pass

    def get_final_message(self) -> Any:
        """Reads the stream to its end and returns the answer its events make: anthropic's `Message` (also for a
        Bedrock model through `messages`), openai's `ChatCompletion`, or a Converse response dict."""
        self.until_done()
        return self._final()

    get_final_completion = get_final_message

    def __enter__(self) -> ReportingStream[T]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._end(exc)

    def __del__(self) -> None:
        if not getattr(self, "_done", True):
            with contextlib.suppress(Exception):
                self._end(None)


class AsyncReportingStream(_Reporting, Generic[T]):
    """The async `ReportingStream`: `async for`, `async with`, `await stream.close()`. A stream garbage collected
    unread is reported by a task on the running event loop (held by the AsyncSwitchboard until done)."""

    def __init__(self, events: AsyncIterator[T], accumulator: Accumulator, *, decision: Decision,
                 finish: Callable[[Observation, BaseException | None], Awaitable[dict[str, Any] | None]],
                 close: Callable[[], Awaitable[Any]] | None = None, response: Any = None, feed: bool = True,
                 schedule: Callable[[Coroutine[Any, Any, Any]], None] | None = None, collector: Collector | None = None) -> None:
        super().__init__(accumulator, decision, response, feed, collector)
        self._events = events
        self._finish = finish
        self._close = close
        self._schedule = schedule

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        try:
            event = await self._events.__anext__()
        except StopAsyncIteration:
            await self._end(None)
            raise
        except BaseException as exc:
            await self._end(exc)
            raise
        return self._read(event)

    async def _end(self, error: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        self.error = error
        await self._report(self._accumulator.observation(), error)

    async def _report(self, observation: Observation, error: BaseException | None) -> None:
        if self._close is not None:
            with contextlib.suppress(Exception):
                await self._close()
        self.switchboard_report = await self._finish(observation, error)
        for callback in self._end_callbacks:
            result = self._call(callback)
            if asyncio.iscoroutine(result):
                try:
                    await result
                except Exception:
                    logger.exception("switchboard_client: a stream's on_end callback failed")

    async def close(self) -> None:
        """Stops reading (closing the provider's connection) and reports what was used."""
        await self._end(None)

    aclose = close

    @property
    async def text_stream(self) -> AsyncIterator[str]:
        """The text deltas of the rest of the stream (`async for text in stream.text_stream`)."""
        async for event in self:
            text = self._text(event)
            if text:
                yield text

    async def until_done(self) -> None:
        """Reads the stream to its end."""
        async for _ in self:
            pass

    async def get_final_message(self) -> Any:
        """See `ReportingStream.get_final_message`."""
        await self.until_done()
        return self._final()

    get_final_completion = get_final_message

    async def __aenter__(self) -> AsyncReportingStream[T]:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        await self._end(exc)

    def __del__(self) -> None:
        if getattr(self, "_done", True):
            return
        self._done = True
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            logger.warning("switchboard_client: an async stream of decision %s was dropped outside an event loop: not reported",
                           self.switchboard_decision.id)
            return
        if self._schedule is not None:
            self._schedule(self._report(self._accumulator.observation(), None))


__all__ = ["Accumulator", "AsyncReportingStream", "Collector", "ReportingStream"]
