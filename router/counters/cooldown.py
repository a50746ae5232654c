"""When a model cools down after reported failures: pure rules over its recent reports.

A report is (time, retry_after, failed). `cooldown_failures` failures within `cooldown_window_seconds`
put the model in cooldown for `cooldown_seconds` (the provider's settings); a reported retry-after
holds it back until then. Both backends keep the reports of the last MODEL_STATE_HORIZON seconds and
ask these rules.
"""

from collections import deque
from collections.abc import Iterable

from router.snapshot import ModelSpec

# How far back a model's reports are read for its cooldown and rate-limit state.
MODEL_STATE_HORIZON = 3600

Report = tuple[float, int | None, bool]


def cooldown_until(reports: Iterable[Report], model: ModelSpec, now: float) -> tuple[float | None, str]:
    """When the model's cooldown ends and why, from its reports in time order; (None, "") if it has none at `now`."""
    until, reason = None, ""
    recent: deque[float] = deque()
    for at, retry_after, failed in reports:
        if failed:
            recent.append(at)
        while recent and recent[0] <= at - model.cooldown_window_seconds:
            recent.popleft()
        if failed and len(recent) >= model.cooldown_failures and at + model.cooldown_seconds > (until or 0):
            until, reason = at + model.cooldown_seconds, f"{len(recent)} failures within {model.cooldown_window_seconds} s"
        if retry_after and at + retry_after > (until or 0):
            until, reason = at + retry_after, f"provider asked to retry after {retry_after} s"
    if until is None or until <= now:
        return None, ""
    return until, reason
