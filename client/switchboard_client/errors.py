"""The errors the client raises; every one is a `SwitchboardError`.

    SwitchboardError
    ├── RequestError        Switchboard refused the request itself: bad input (400, with the API's `detail`),
    │                       a key without the scope (401/403), a report that conflicts with an earlier one (409).
    ├── Unavailable         Switchboard could not be reached, or answered that it cannot decide right now
    │                       (503 `counters_unavailable`, 5xx), after the client's bounded retries with backoff.
    └── Refused             A routing refusal: no model may be called for this request right now. Carries the
        │                   `decision_id`, `retry_after` (seconds, from Retry-After; None when unknown), `trace`.
        ├── NoCapacity          every candidate of the route was passed over (`no_capacity`).
        ├── AttemptsExhausted   the task has been tried more often than its route allows (`attempts_exhausted`).
        └── FailedFast          a category that never falls back found its primary passed over: nothing else
            │                   was tried (`primary_unavailable`).
            ├── QuotaExceeded   ... because a quota of the primary is exhausted (`quota_exceeded`).
            └── RateLimited     ... because the provider kept answering 429 after the client's back-off on the
                                same model (`provider_rate_limited`; raised by the client, chained to the SDK's 429).

`Refused.quota` is True when a quota was among the reasons (HTTP 429); such a refusal usually names a
`retry_after`. A refusal that follows provider failures of the same call names the last one in its message and has it
as its `__cause__`. Other errors of the providers' SDKs are not wrapped: a helper raises them as the SDK did.
"""

from __future__ import annotations

from typing import Any


class SwitchboardError(Exception):
    """Anything the client raises about Switchboard itself."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None, body: dict[str, Any] | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body or {}
        self.retry_after = retry_after
        """Seconds until trying again may work (Switchboard's Retry-After header), or None when it did not say."""

    @property
    def detail(self) -> str:
        """What the API said was wrong (its `detail`), else the message."""
        return str(self.body.get("detail") or self.args[0])


class RequestError(SwitchboardError):
    """Switchboard answered 4xx to the request itself (not a refusal): fix the request, the key or the report."""


class Unavailable(SwitchboardError):
    """Switchboard cannot be reached or cannot decide right now, after bounded retries; trying later may work."""


class Refused(SwitchboardError):
    """A routing refusal (429 or 503 with a decision): no model may be called for this request right now."""

    @property
    def decision_id(self) -> str | None:
        return self.body.get("decision_id")

    @property
    def trace(self) -> list[dict[str, Any]]:
        """Every candidate considered, with why it was passed over."""
        return list(self.body.get("trace") or [])

    @property
    def primary(self) -> str | None:
        """The key of the route's or tier's first model."""
        return (self.body.get("primary") or {}).get("key")

    @property
    def reason(self) -> str:
        """Why the decision went as it did: which candidates were passed over, and why."""
        return str(self.body.get("reason") or "")

    @property
    def quota(self) -> bool:
        """True when a quota was among the reasons (Switchboard answered 429)."""
        return self.status == 429


class NoCapacity(Refused):
    """Every candidate of the route was passed over (`no_capacity`)."""


class AttemptsExhausted(Refused):
    """The task was tried more often than its route's `max_attempts` (`attempts_exhausted`)."""


class FailedFast(Refused):
    """A category that never falls back found its primary passed over (`primary_unavailable`); nothing else was tried."""


class QuotaExceeded(FailedFast):
    """A category that never falls back found its primary over quota (`quota_exceeded`); see `retry_after`."""


class RateLimited(FailedFast):
    """On a route that never falls back, the provider answered 429 and the client's back-off on the same model did not
    get an answer: the retry-after was beyond the cap, or the attempts ran out. `retry_after` is the provider's;
    `__cause__` the SDK's 429."""

    @property
    def quota(self) -> bool:
        return True


REFUSALS: dict[str, type[Refused]] = {
    "no_capacity": NoCapacity,
    "attempts_exhausted": AttemptsExhausted,
    "primary_unavailable": FailedFast,
    "quota_exceeded": QuotaExceeded,
}
# 503 answers that mean Switchboard itself cannot decide now: retried, then raised as Unavailable.
RETRYABLE_CODES = frozenset({"counters_unavailable"})


def error_for(status: int, body: dict[str, Any], retry_after: int | None) -> SwitchboardError:
    """The error for a Switchboard answer that is not a success."""
    code = str(body.get("error") or f"http_{status}")
    detail = str(body.get("detail") or f"Switchboard answered HTTP {status}.")
    message = f"{code}: {detail}"
    if code in REFUSALS or (status in (429, 503) and "decision_id" in body):
        return REFUSALS.get(code, Refused)(message, status=status, code=code, body=body, retry_after=retry_after)
    if status >= 500:
        return Unavailable(message, status=status, code=code, body=body, retry_after=retry_after)
    return RequestError(message, status=status, code=code, body=body)


__all__ = [
    "AttemptsExhausted", "FailedFast", "NoCapacity", "QuotaExceeded", "RateLimited", "Refused", "RequestError",
    "SwitchboardError", "Unavailable", "error_for",
]
