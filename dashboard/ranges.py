"""The time range a dashboard page shows: last hour, 6 h, 24 h, 7 days, or a custom since/until.

The range also sets the chart's buckets, so that a short range is drawn in minutes and a long one in
hours: about 24 to 100 bars whatever the span.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django import forms
from django.http import QueryDict
from django.utils import timezone

# (key, label, span, bucket seconds)
PRESETS = (
    ("1h", "Last hour", timedelta(hours=1), 60),
    ("6h", "Last 6 h", timedelta(hours=6), 600),
    ("24h", "Last 24 h", timedelta(hours=24), 3600),
    ("7d", "Last 7 days", timedelta(days=7), 6 * 3600),
)
DEFAULT = "24h"
CUSTOM = "custom"
# The longest custom range: the per-minute and per-hour sums behind the charts go back this far at most.
LONGEST = timedelta(days=31)
# Bucket sizes a custom range picks from: the smallest that draws at most MAX_BUCKETS bars.
BUCKET_CHOICES = (60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 86400)
MAX_BUCKETS = 120


@dataclass(frozen=True)
class TimeRange:
    key: str
    label: str
    since: datetime
    until: datetime
    bucket_seconds: int

    @property
    def span(self) -> timedelta:
        return self.until - self.since

    @property
    def is_custom(self) -> bool:
        return self.key == CUSTOM

    def query(self) -> str:
        """The range as a query string (for links and the refresh)."""
        params = QueryDict(mutable=True)
        params["range"] = self.key
        if self.is_custom:
            params["since"] = self.since.strftime("%Y-%m-%dT%H:%M")
            params["until"] = self.until.strftime("%Y-%m-%dT%H:%M")
        return params.urlencode()


def _bucket_for(span: timedelta) -> int:
    for seconds in BUCKET_CHOICES:
        if span.total_seconds() / seconds <= MAX_BUCKETS:
            return seconds
    return BUCKET_CHOICES[-1]


class RangeForm(forms.Form):
    """`range` (a preset or custom) and, for custom, `since` and `until` (UTC)."""

    range = forms.ChoiceField(required=False, choices=[(key, label) for key, label, _, _ in PRESETS] + [(CUSTOM, "Custom")])
    since = forms.DateTimeField(required=False, label="Since (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(required=False, label="Until (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("range") == CUSTOM:
            since, until = cleaned.get("since"), cleaned.get("until") or timezone.now()
            if not since:
                self.add_error("since", "A custom range needs its start.")
            elif since >= until:
                self.add_error("until", "Must be later than 'since'.")
            elif until - since > LONGEST:
                self.add_error("since", f"A range covers at most {LONGEST.days} days.")
        return cleaned

    def time_range(self, now: datetime | None = None) -> TimeRange:
        """The chosen range; the default (last 24 h) for an invalid or empty form."""
        now = now or timezone.now()
        key = (self.cleaned_data.get("range") if self.is_valid() else "") or DEFAULT
        if key == CUSTOM:
            since, until = self.cleaned_data["since"], min(self.cleaned_data.get("until") or now, now)
            return TimeRange(CUSTOM, f"{since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC", since, until, _bucket_for(until - since))
        _, label, span, bucket = next(preset for preset in PRESETS if preset[0] == key)
        return TimeRange(key, label, now - span, now, bucket)


def time_range(params: QueryDict, now: datetime | None = None) -> tuple[RangeForm, TimeRange]:
    form = RangeForm(params)
    return form, form.time_range(now)


def preset_links(current: TimeRange, params: QueryDict) -> list[tuple[str, str, bool]]:
    """(label, query string, current) per preset, keeping the page's other parameters."""
    links = []
    for key, label, _, _ in PRESETS:
        query = params.copy()
        for name in ("range", "since", "until", "page", "fragment"):
            query.pop(name, None)
        query["range"] = key
        links.append((label, query.urlencode(), current.key == key))
    return links
