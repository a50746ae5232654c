"""Streams that report when they end: the SDK's stream (or boto3's event stream) is passed through event by event
while its usage is read; the report is sent once, when the stream is read to its end, closed early, fails, or is
garbage collected unread (abandoned). A stream that ends without the provider's final usage (closed early) reports
the usage seen so far, its output estimated from the text received."""

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


Finish = Callable[[Observation, "BaseException | None"], "dict[str, Any] | None"]


class _Reporting:
    """What a reporting stream holds, sync or async: the routing decision, the report once sent, the provider's
    response, and what the events said so far."""

    def __init__(self, accumulator: Accumulator, decision: Decision, response: Any, feed: bool) -> None:
        self._accumulator = accumulator
        self._feed = feed
        self._done = False
        self.switchboard_decision = decision
        self.switchboard_report: dict[str, Any] | None = None
        self.response = response

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
        return event


class ReportingStream(_Reporting, Generic[T]):
    """Iterate it (or use it as a context manager) as you would the SDK's stream; it yields the SDK's own events.

    `switchboard_decision` is the routing decision, `switchboard_report` the usage event once reported,
    `response` the provider's HTTP response where the SDK exposes it. Call `close()` to stop early."""

    def __init__(self, events: Iterator[T], accumulator: Accumulator, *, decision: Decision, finish: Finish,
                 close: Callable[[], Any] | None = None, response: Any = None, feed: bool = True) -> None:
        super().__init__(accumulator, decision, response, feed)
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
        if self._close is not None:
            with contextlib.suppress(Exception):
                self._close()
        self.switchboard_report = self._finish(self._accumulator.observation(), error)

    def close(self) -> None:
        """Stops reading (closing the provider's connection) and reports what was used."""
        self._end(None)

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
                 schedule: Callable[[Coroutine[Any, Any, Any]], None] | None = None) -> None:
        super().__init__(accumulator, decision, response, feed)
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
        await self._report(self._accumulator.observation(), error)

    async def _report(self, observation: Observation, error: BaseException | None) -> None:
        if self._close is not None:
            with contextlib.suppress(Exception):
                await self._close()
        self.switchboard_report = await self._finish(observation, error)

    async def close(self) -> None:
        """Stops reading (closing the provider's connection) and reports what was used."""
        await self._end(None)

    aclose = close

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


__all__ = ["Accumulator", "AsyncReportingStream", "ReportingStream"]
