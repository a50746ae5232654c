"""Template filters that format numbers and times for people: 1.2M, $3.20, 85%, "in 3 h", "12 min ago"."""

from datetime import UTC, datetime
from decimal import Decimal

from django import template
from django.utils import timezone

from router.policy.versions import describe

register = template.Library()

Number = int | float | Decimal


def _as_datetime(value: datetime | float | int | None) -> datetime | None:
    """A datetime from a datetime or an epoch timestamp (the counters speak epoch seconds)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(float(value), tz=UTC)


def _strip_zero(text: str) -> str:
    return text[:-2] if text.endswith(".0") else text


@register.filter
def compact(value: Number | None) -> str:
    """1234 -> '1.2K', 1_200_000 -> '1.2M', 4000 -> '4.0K', 950 -> '950', 2.5 -> '2.5'."""
    if value is None or value == "":
        return "–"
    number = float(value)
    sign = "-" if number < 0 else ""
    number = abs(number)
    # Largest unit first; 999,999 rounds to "1.0M" rather than "1000.0K".
    for threshold, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if round(number / threshold, 1) >= 1:
            return f"{sign}{number / threshold:.1f}{suffix}"
    if number == int(number):
        return f"{sign}{int(number)}"
    text = f"{number:.1f}" if number >= 10 else f"{number:.2f}".rstrip("0").rstrip(".")
    return f"{sign}{text}"


@register.filter
def thousands(value: int | None) -> str:
    """An exact count with separators: 12345 -> '12,345'."""
    return "–" if value is None or value == "" else f"{int(value):,}"


@register.filter
def usd(value: Number | None) -> str:
    """Dollars: 3.2 -> '$3.20', 1234.5 -> '$1,234.50', 0.0042 -> '$0.0042', 2_500_000 -> '$2.5M'."""
    if value is None or value == "":
        return "–"
    number = float(value)
    if abs(number) >= 1_000_000:
        return f"${compact(number)}"
    if 0 < abs(number) < 0.01:
        return f"${number:.4f}"
    return f"${number:,.2f}"


@register.filter
def percent(ratio: Number | None) -> str:
    """A ratio as a percentage: 0.85 -> '85%', 0.004 -> '<1%', 0 -> '0%', 1.5 -> '150%'."""
    if ratio is None or ratio == "":
        return "–"
    value = float(ratio) * 100
    if 0 < value < 1:
        return "<1%"
    if 99 < value < 100:
        return "99%"  # never round a quota that still has room up to "100%"
    return f"{value:.0f}%"


@register.filter
def quota_amount(value: Number | None, metric: str) -> str:
    """A quota quantity in its own unit: dollars for cost quotas, '1.2M tokens', '250 requests'."""
    if value is None or value == "":
        return "–"
    if metric == "cost_usd":
        return usd(value)
    text = compact(value)
    unit = "request" if metric == "requests" else "token"
    return f"{text} {unit}" if text == "1" else f"{text} {unit}s"


def _span(seconds: float) -> str:
    """A duration, rounded, in the largest sensible unit: '45 s', '12 min', '1.5 h', '30 h', '2 d'."""
    seconds = abs(seconds)
    if seconds < 59.5:
        return f"{round(seconds)} s"
    if seconds < 3600 - 30:
        return f"{round(seconds / 60)} min"
    hours = seconds / 3600
    if hours < 9.95:
        return f"{_strip_zero(f'{hours:.1f}')} h"
    if hours < 47.5:
        return f"{round(hours)} h"
    return f"{round(seconds / 86400)} d"


@register.filter
def from_now(value: datetime | float | None) -> str:
    """A future moment relative to now: 'in 3 h', 'in 12 min', 'now' (or '3 min ago' if it has passed)."""
    moment = _as_datetime(value)
    if moment is None:
        return "–"
    delta = (moment - timezone.now()).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"in {_span(delta)}" if delta > 0 else f"{_span(delta)} ago"


@register.filter
def ago(value: datetime | float | None) -> str:
    """A past moment relative to now: '12 min ago', '3 h ago', 'just now'."""
    moment = _as_datetime(value)
    if moment is None:
        return "never"
    delta = (timezone.now() - moment).total_seconds()
    if delta < 5:
        return "just now"
    return f"{_span(delta)} ago" if delta > 0 else f"in {_span(delta)}"


@register.filter
def as_datetime(value: datetime | float | None) -> datetime | None:
    """An epoch timestamp as an aware datetime, for the `date` filter and <time datetime=…>."""
    return _as_datetime(value)


METRIC_LABELS = {"requests": "requests", "tokens": "tokens", "input_tokens": "input tokens",
                 "output_tokens": "output tokens", "cost_usd": "spend (USD)"}


@register.filter
def metric_label(metric: str) -> str:
    """A quota metric in words: 'input_tokens' -> 'input tokens', 'cost_usd' -> 'spend (USD)'."""
    return METRIC_LABELS.get(metric, metric)


@register.filter
def policy_change(change: dict) -> str:
    """A stored policy change as import_policy --plan prints it: '~ route general/low: models: [...] -> [...]'."""
    return describe(change)
