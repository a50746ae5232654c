"""When a model cools down after reported failures: pure rules over its recent reports.

A report is (time, retry_after, failed, caller). `cooldown_failures` failures within
`cooldown_window_seconds` put the model in cooldown for `cooldown_seconds` (the provider's settings);
a reported retry-after holds it back until then, for at most `max_retry_after_seconds`, so that one
key cannot take a model out for a day. The cooldown names the caller whose report started it. Both
backends keep the reports of the last MODEL_STATE_HORIZON seconds and ask these rules.
"""

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from router.snapshot import ModelSpec

# How far back a model's reports are read for its cooldown and rate-limit state.
MODEL_STATE_HORIZON = 3600

Report = tuple[float, int | None, bool, str]


@dataclass(frozen=True)
class Cooldown:
    until: float
    reason: str
    by: str  # the caller whose report started it


def cooldown(reports: Iterable[Report], model: ModelSpec, now: float) -> Cooldown | None:
    """The model's cooldown at `now` from its reports in time order, if it has one."""
    found = None
    recent: deque[float] = deque()
    for at, retry_after, failed, caller in reports:
        if failed:
            recent.append(at)
        while recent and recent[0] <= at - model.cooldown_window_seconds:
            recent.popleft()
        if failed and len(recent) >= model.cooldown_failures and at + model.cooldown_seconds > (found.until if found else 0):
            found = Cooldown(at + model.cooldown_seconds, f"{len(recent)} failures within {model.cooldown_window_seconds} s", caller)
        if retry_after:
            held = min(retry_after, model.max_retry_after_seconds)
            capped = f" (capped at {held} s)" if held < retry_after else ""
            if at + held > (found.until if found else 0):
                found = Cooldown(at + held, f"provider asked to retry after {retry_after} s{capped}", caller)
    return found if found and found.until > now else None
