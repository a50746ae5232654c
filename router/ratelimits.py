"""Reading providers' rate-limit response headers, as services forward them in usage reports.

Anthropic: anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset},
resets as RFC 3339 times. OpenAI and OpenAI-compatible APIs: x-ratelimit-{limit,remaining,reset}-
{requests,tokens}, resets as durations such as "1s", "6m0s" or "20ms".
"""

import re
from datetime import datetime

from router.engine import RateLimitState

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
# Each limit's headers: Anthropic's, then OpenAI's (and compatible APIs').
LIMITS = {
    "requests": {"remaining": ("anthropic-ratelimit-requests-remaining", "x-ratelimit-remaining-requests"),
                 "reset": ("anthropic-ratelimit-requests-reset", "x-ratelimit-reset-requests")},
    "tokens": {"remaining": ("anthropic-ratelimit-tokens-remaining", "x-ratelimit-remaining-tokens"),
               "reset": ("anthropic-ratelimit-tokens-reset", "x-ratelimit-reset-tokens")},
    "input_tokens": {"remaining": ("anthropic-ratelimit-input-tokens-remaining",), "reset": ("anthropic-ratelimit-input-tokens-reset",)},
    "output_tokens": {"remaining": ("anthropic-ratelimit-output-tokens-remaining",), "reset": ("anthropic-ratelimit-output-tokens-reset",)},
}
# No provider's rate-limit window is longer than a day: a reset further out is a mistake, and must
# neither hold a model back indefinitely nor overflow a Redis expiry time.
MAX_RESET_SECONDS = 86400


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except (ValueError, OverflowError):  # "abc", "inf", "1e400"
        return None


def _reset_at(value: str | None, now: float) -> float | None:
    reset = _parse_reset(value, now)
    return min(reset, now + MAX_RESET_SECONDS) if reset is not None else None


def _parse_reset(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError):  # not a time, or one out of range ("0001-01-01T00:00:00")
        pass
    parts = _DURATION_PART.findall(value)
    if parts and "".join(n + u for n, u in parts) == value:
        return now + sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    seconds = _int(value)
    return now + seconds if seconds is not None else None


def parse_ratelimit_headers(headers: dict[str, str], now: float) -> RateLimitState | None:
    """The remaining counts and reset times the headers state, or None when they state nothing."""
    h = {str(k).lower(): str(v) for k, v in headers.items()}
    state = {}
    for limit, names in LIMITS.items():
        remaining = next((_int(h[name]) for name in names["remaining"] if name in h), None)
        if remaining is not None:
            state[f"{limit}_remaining"] = remaining
            state[f"{limit}_reset_at"] = next((_reset_at(h[name], now) for name in names["reset"] if name in h), None)
    if "input_tokens_remaining" in state or "output_tokens_remaining" in state:
        # Anthropic's tokens-* headers repeat the most restrictive of its input and output limits, not a limit of their own.
        state.pop("tokens_remaining", None)
        state.pop("tokens_reset_at", None)
    return RateLimitState(**state) if state else None
