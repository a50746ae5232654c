"""`with sb.routed(...) as call:` for calls the helpers do not cover: the block gets `call.decision` (call
`call.decision.model.invoke_id` at its provider with any client), and `call.report(response)` reads usage, the
answering model and rate-limit headers from the SDKs' responses. Whatever happens, the decision is reported once:

- `call.report(...)` inside the block: that report (errors from Switchboard propagate);
- an exception leaving the block: a provider failure (429, 404, 5xx, timeout, refused connection) as `rate_limited`,
  `not_found` or `error` (with the provider's retry-after); any other exception (a 400, a bug) as used nothing;
- the block ending without a report: used nothing (and a warning is logged).

A routed block is one attempt: to try the next candidate, open another block with `exclude=[call.decision.model.key]`.
Name the APIs the block can call with `apis=` (e.g. `["anthropic"]`), so that Switchboard never reserves a model it
cannot call. With `fail_open=`, a block opened while Switchboard cannot answer gets the default model's decision
(`call.decision.fail_open`), and its report is queued.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from switchboard_client.api import Decision, ReportStatus
from switchboard_client.errors import SwitchboardError
from switchboard_client.usage import Observation, Usage, failure_for, observe

if TYPE_CHECKING:
    from switchboard_client.client import AsyncSwitchboard, Switchboard

logger = logging.getLogger("switchboard_client")


def _explicit(response: Any, usage: Usage | None, headers: Mapping[str, str] | None) -> Observation:
    if response is not None:
        observation = observe(response)
        if headers:
            observation = Observation(observation.usage, observation.answered_by, {**observation.ratelimit_headers, **headers})
        return observation
    return Observation(usage or Usage(), None, dict(headers or {}))


class _Routed:
    """What a routed block holds, sync or async: the route it asks for, the decision once routed, the report once sent."""

    block = "`with`"

    def __init__(self, switchboard: Any, route: dict[str, Any]) -> None:
        self._switchboard = switchboard
        self._route = route
        self._decision: Decision | None = None
        self.reported: dict[str, Any] | None = None
        """The usage event Switchboard recorded, once reported."""
        self.done = False

    @property
    def decision(self) -> Decision:
        if self._decision is None:
            raise RuntimeError(f"the call is routed when its {self.block} block starts")
        return self._decision

    def _report_arguments(self, response: Any, usage: Usage | None, ratelimit_headers: Mapping[str, str] | None, status: ReportStatus,
                          retry_after: int | None) -> tuple[Observation, dict[str, Any]]:
        """What the response or the given usage said, and the report's arguments but the answering model."""
        self.done = True
        observation = _explicit(response, usage, ratelimit_headers)
        arguments: dict[str, Any] = {"ratelimit_headers": observation.ratelimit_headers}
        if status != "ok":
            arguments.update(status=status, retry_after=retry_after)
            arguments["usage"] = observation.usage if response is not None or usage else None
        else:
            arguments["usage"] = observation.usage
        return observation, arguments

    def _unreported(self) -> None:
        logger.warning("switchboard_client: routed block for decision %s ended without a report: reported as used nothing", self.decision.id)

    def _not_reported(self, exc: SwitchboardError) -> None:
        logger.warning("switchboard_client: could not report decision %s: %s", self.decision.id, exc)


class RoutedCall(_Routed):
    """One routed call (sync). Created by `Switchboard.routed`; routes when the `with` block starts."""

    _switchboard: Switchboard

    def __enter__(self) -> RoutedCall:
        self._decision = self._switchboard.decide(dict(self._route))
        return self

    def report(self, response: Any = None, *, usage: Usage | None = None, status: ReportStatus = "ok", model: str | None = None,
               retry_after: int | None = None, ratelimit_headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Reports the call: from an SDK response (anthropic `Message`, openai `ChatCompletion`, boto3's Converse dict, or
        a raw response from `.with_raw_response`, whose headers are read too), or from `usage` given. `model`: the
        Switchboard key of the model that answered, when you know it is not the decision's."""
        observation, arguments = self._report_arguments(response, usage, ratelimit_headers, status, retry_after)
        if status == "ok":
            arguments["model"] = model or self._switchboard.answering_key(self.decision, observation.answered_by)
        self.reported = self._switchboard.report(self.decision, **arguments)
        return self.reported

    def fail(self, error: BaseException) -> dict[str, Any] | None:
        """Reports an exception as the call's outcome (see the module doc for the statuses) without raising it."""
        self.done = True
        try:
            self.reported = self._switchboard.report_failure(self.decision, failure_for(error))
        except SwitchboardError as exc:
            self._not_reported(exc)
        return self.reported

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if self.done or self._decision is None:
            return
        if exc is None:
            self._unreported()
        self.fail(exc or Exception("no report"))


class AsyncRoutedCall(_Routed):
    """One routed call (async): `async with sb.routed(...) as call:` and `await call.report(response)`."""

    block = "`async with`"
    _switchboard: AsyncSwitchboard

    async def __aenter__(self) -> AsyncRoutedCall:
        self._decision = await self._switchboard.decide(dict(self._route))
        return self

    async def report(self, response: Any = None, *, usage: Usage | None = None, status: ReportStatus = "ok", model: str | None = None,
                     retry_after: int | None = None, ratelimit_headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """See `RoutedCall.report`; an async SDK's raw response is parsed here."""
        parse = getattr(response, "parse", None)
        if callable(parse) and hasattr(response, "headers"):
            parsed = parse()
            if inspect.isawaitable(parsed):
                parsed = await parsed
            ratelimit_headers = {**observe(None, response.headers).ratelimit_headers, **(ratelimit_headers or {})}
            response = parsed
        observation, arguments = self._report_arguments(response, usage, ratelimit_headers, status, retry_after)
        if status == "ok":
            arguments["model"] = model or await self._switchboard.answering_key(self.decision, observation.answered_by)
        self.reported = await self._switchboard.report(self.decision, **arguments)
        return self.reported

    async def fail(self, error: BaseException) -> dict[str, Any] | None:
        """See `RoutedCall.fail`."""
        self.done = True
        try:
            self.reported = await self._switchboard.report_failure(self.decision, failure_for(error))
        except SwitchboardError as exc:
            self._not_reported(exc)
        return self.reported

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if self.done or self._decision is None:
            return
        if exc is None:
            self._unreported()
        await self.fail(exc or Exception("no report"))


__all__ = ["AsyncRoutedCall", "RoutedCall"]
