"""Fail-open (opt-in): when Switchboard cannot answer (it cannot be reached, times out, or answers a 5xx that is not a
refusal), call a default model instead of raising `Unavailable`, and keep the usage reports in memory until it
answers again.

The default for a call, first found of:
1. `FailOpen(defaults=...)`: by `"<category>/<complexity>"`, `"<category>"`, `"tier:<slug>"`, then `"*"`; a value is a
   `Model` or a dict of one (`key`, `provider`, `kind`, `model_id`; `invoke_id`, `base_url`, `region` where needed);
2. the model Switchboard last answered for the same category, complexity, tier and APIs (its primary once it has
   chosen it), when `learn=True` (the default).

Refusals (429, and 503 naming a decision) are Switchboard's answer, never a reason to fail open. After Switchboard
could not answer, calls go straight to the default for `recheck_after` seconds, then ask Switchboard again; the first
answer sends the queued reports (at most `max_queued`, oldest dropped first, the number dropped logged) as usage
reports without a decision, each under its own idempotency key, so each is counted once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from switchboard_client.api import Decision, Model

logger = logging.getLogger("switchboard_client")


@dataclass(frozen=True)
class FailOpen:
    """How a client keeps serving when Switchboard cannot answer (see the module doc)."""

    defaults: Mapping[str, Model | Mapping[str, Any]] = field(default_factory=dict)
    learn: bool = True
    max_queued: int = 10_000
    recheck_after: float = 5.0


def _model(value: Model | Mapping[str, Any]) -> Model:
    return value if isinstance(value, Model) else Model.from_answer(value)


class FailOpenState:
    """What one client knows for failing open: the defaults, what it learned, whether Switchboard is down, and the
    queued reports. Shared by the client's threads (every change under one lock)."""

    def __init__(self, config: FailOpen) -> None:
        self.config = config
        self.defaults = {name: _model(value) for name, value in config.defaults.items()}
        self.learned: dict[tuple[Any, ...], Model] = {}
        self.queue: deque[dict[str, Any]] = deque()
        self.dropped = 0
        self.down_until = 0.0
        self.flushing = False
        self.lock = threading.Lock()

    @staticmethod
    def _route_key(route: Mapping[str, Any]) -> tuple[Any, ...]:
        apis = route.get("apis")
        return route.get("category"), route.get("complexity"), route.get("tier"), tuple(apis) if apis else None

    def learn(self, route: Mapping[str, Any], decision: Decision) -> None:
        if not self.config.learn:
            return
        key = self._route_key(route)
        with self.lock:
            if decision.outcome == "primary" or key not in self.learned:
                self.learned[key] = decision.model

    def is_down(self) -> bool:
        return time.monotonic() < self.down_until

    def mark_down(self) -> None:
        with self.lock:
            self.down_until = time.monotonic() + self.config.recheck_after

    def default_for(self, route: Mapping[str, Any]) -> Model | None:
        category, complexity, tier = route.get("category"), route.get("complexity"), route.get("tier")
        names = [f"{category}/{complexity or 'medium'}", category] if category else [f"tier:{tier}" if tier else "tier:"]
        for name in [*names, "*"]:
            if name and name in self.defaults:
                return self.defaults[name]
        with self.lock:
            return self.learned.get(self._route_key(route))

    def decision(self, route: Mapping[str, Any], error: Exception) -> Decision | None:
        """A decision for the default model of this call, or None when there is none (or it is excluded)."""
        model = self.default_for(route)
        if model is None or model.key in (route.get("exclude") or ()):
            return None
        reason = f"fail-open: Switchboard could not answer ({error}); calling the default {model.key}"
        return Decision(id=f"fail-open-{uuid.uuid4().hex}", outcome="fail_open", reason=reason, model=model, primary=model.key,
                        attempt=int(route.get("attempt") or 1), fail_open=True)

    def enqueue(self, body: dict[str, Any]) -> None:
        with self.lock:
            if len(self.queue) >= self.config.max_queued:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append(body)

    @property
    def queued(self) -> int:
        return len(self.queue)

    def take(self) -> tuple[list[dict[str, Any]], int] | None:
        """The queued reports and the number dropped, for one flusher at a time (None when another is flushing or
        there is nothing to send); the flusher calls `done` with what it could not send."""
        with self.lock:
            if self.flushing or not (self.queue or self.dropped):
                return None
            self.flushing = True
            reports, dropped = list(self.queue), self.dropped
            self.queue.clear()
            self.dropped = 0
            self.down_until = 0.0
        return reports, dropped

    def done(self, unsent: list[dict[str, Any]], sent: int, dropped: int) -> None:
        with self.lock:
            self.queue.extendleft(reversed(unsent))
            while len(self.queue) > self.config.max_queued:
                self.queue.popleft()
                dropped += 1
            self.flushing = False
            if unsent:
                self.dropped += dropped
        if not unsent:
            logger.warning("switchboard_client: Switchboard answers again: sent %d usage reports queued while failing open; %d dropped "
                           "(the queue holds %d)", sent, dropped, self.config.max_queued)


__all__ = ["FailOpen", "FailOpenState"]
