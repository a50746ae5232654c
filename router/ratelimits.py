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
    requests_remaining = _int(h.get("anthropic-ratelimit-requests-remaining", h.get("x-ratelimit-remaining-requests")))
    tokens_remaining = _int(h.get("anthropic-ratelimit-tokens-remaining", h.get("x-ratelimit-remaining-tokens")))
    requests_reset = _reset_at(h.get("anthropic-ratelimit-requests-reset", h.get("x-ratelimit-reset-requests")), now)
    tokens_reset = _reset_at(h.get("anthropic-ratelimit-tokens-reset", h.get("x-ratelimit-reset-tokens")), now)
    if tokens_remaining is None:
        # Anthropic also reports input and output tokens separately; the tighter one is what limits a call.
        split = [_int(h.get(f"anthropic-ratelimit-{kind}-tokens-remaining")) for kind in ("input", "output")]
        split = [value for value in split if value is not None]
        if split:
            tokens_remaining = min(split)
            resets = [_reset_at(h.get(f"anthropic-ratelimit-{kind}-tokens-reset"), now) for kind in ("input", "output")]
            tokens_reset = max((r for r in resets if r is not None), default=None)
    if requests_remaining is None and tokens_remaining is None:
        return None
    return RateLimitState(
        requests_remaining=requests_remaining, requests_reset_at=requests_reset,
        tokens_remaining=tokens_remaining, tokens_reset_at=tokens_reset,
    )
