"""Geometry for the dashboard's server-side SVG charts: decisions per bucket (a minute to a day, as the
range sets), stacked by outcome,
with the fallback rate (fallbacks and refusals over all decisions) as a line on its own 0-100% scale.

Pure functions from the selector's buckets to coordinates; the template only draws them.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from dashboard.selectors import PolicyMarker, UsagePoint, Volume

WIDTH = 960
HEIGHT = 190
LEFT = 40  # room for the count axis labels
RIGHT = 40  # room for the rate axis labels
TOP = 10
BOTTOM = 24  # room for the hour labels
QUOTA_AXIS_EXTRA = 60  # a quota's axis labels carry their unit ("800.0K tokens")


@dataclass(frozen=True)
class Segment:
    kind: str  # primary, fallback, refused
    y: float
    height: float


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    segments: tuple[Segment, ...]
    label: str  # the bucket's start, shown under every few bars
    show_label: bool
    title: str  # the tooltip


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    plot_height: int
    center_x: float
    center_y: float
    label_y: int
    bars: tuple[Bar, ...]
    count_ticks: tuple[Tick, ...]
    rate_ticks: tuple[Tick, ...]
    rate_points: str  # SVG polyline points; hours without decisions break nothing, they are left out
    rate_dots: tuple[tuple[float, float], ...]
    empty: bool
    bucket_label: str  # what one bar covers: "minute", "10 minutes", "hour", …


def _nice_max(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least value (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def volume_chart(volume: Volume) -> Chart:
    buckets = volume.buckets
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    bottom = TOP + plot_height
    top_count = _nice_max(max((b.total for b in buckets), default=0))
    slot = plot_width / max(len(buckets), 1)
    bar_width = max(slot * 0.7, 1)

    def y_for(count: float) -> float:
        return bottom - plot_height * count / top_count

    label_format = "%H:%M" if volume.until - volume.since <= timedelta(days=1) else "%m-%d %H:%M"
    label_every = max(1, math.ceil(len(buckets) / (9 if label_format == "%H:%M" else 6)))
    bars, points = [], []
    for index, bucket in enumerate(buckets):
        x = LEFT + index * slot + (slot - bar_width) / 2
        segments, level = [], 0
        for kind, count in (("primary", bucket.primary), ("fallback", bucket.fallback), ("refused", bucket.refused)):
            if count:
                segments.append(Segment(kind, round(y_for(level + count), 1), round(y_for(level) - y_for(level + count), 1)))
                level += count
        rate = bucket.fallback_rate
        if rate is not None:
            points.append((round(x + bar_width / 2, 1), round(bottom - plot_height * rate, 1)))
        start = bucket.start.strftime(label_format)
        rate_text = f", {rate * 100:.0f}% not primary" if rate is not None else ""
        bars.append(Bar(
            x=round(x, 1), width=round(bar_width, 1), segments=tuple(segments), label=start,
            show_label=index % label_every == 0,
            title=f"{start} UTC: {bucket.total} decisions, {bucket.fallback} fallback, {bucket.refused} refused{rate_text}",
        ))
    count_ticks = tuple(Tick(round(y_for(v), 1), str(v)) for v in (0, top_count // 2, top_count) if v or top_count)
    rate_ticks = tuple(Tick(round(bottom - plot_height * r, 1), f"{r * 100:.0f}%") for r in (0, 0.5, 1))
    return Chart(
        width=WIDTH, height=HEIGHT, plot_left=LEFT, plot_right=WIDTH - RIGHT, plot_top=TOP, plot_bottom=bottom,
        plot_height=plot_height, center_x=LEFT + plot_width / 2, center_y=TOP + plot_height / 2, label_y=HEIGHT - 6,
        bars=tuple(bars), count_ticks=tuple(dict.fromkeys(count_ticks)), rate_ticks=rate_ticks,
        rate_points=" ".join(f"{x},{y}" for x, y in points), rate_dots=tuple(points), empty=volume.total == 0,
        bucket_label=_bucket_label(volume.bucket_seconds),
    )


def _bucket_label(seconds: int) -> str:
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % length == 0:
            count = seconds // length
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds} seconds"


@dataclass(frozen=True)
class Marker:
    x: float
    number: int
    title: str


@dataclass(frozen=True)
class TimeTick:
    x: float
    label: str


@dataclass(frozen=True)
class QuotaChart:
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    label_y: int
    line: str  # SVG polyline points of the usage
    area: str  # the same, closed along the bottom
    hard_y: float
    soft_y: float | None
    value_ticks: tuple[Tick, ...]
    time_ticks: tuple[TimeTick, ...]
    markers: tuple[Marker, ...]
    empty: bool


def quota_chart(points: list[UsagePoint], *, since: datetime, until: datetime, limit: float, soft_limit: float | None,
                markers: list[PolicyMarker], format_value: Callable[[float], str]) -> QuotaChart:
    """A quota's usage over the range as a line, with its hard and soft limits across and its policy changes as
    vertical markers."""
    left = LEFT + QUOTA_AXIS_EXTRA
    plot_width = WIDTH - left - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    bottom = TOP + plot_height
    top_value = max([limit * 1.1, *(point.used for point in points)]) or 1
    span = max((until - since).total_seconds(), 1)

    def x_for(moment: datetime) -> float:
        return round(left + plot_width * min(max((moment - since).total_seconds() / span, 0), 1), 1)

    def y_for(value: float) -> float:
        return round(bottom - plot_height * value / top_value, 1)

    # Each point is the highest usage of its bucket, drawn at the bucket's end (the range's end for the last one).
    step = points[1].at - points[0].at if len(points) > 1 else until - since
    coordinates = [(x_for(min(point.at + step, until)), y_for(point.used)) for point in points]
    line = " ".join(f"{x},{y}" for x, y in coordinates)
    area = f"{coordinates[0][0]},{bottom} {line} {coordinates[-1][0]},{bottom}" if coordinates else ""
    label_format = "%H:%M" if until - since <= timedelta(days=1) else "%m-%d %H:%M"
    time_ticks = tuple(TimeTick(x_for(since + (until - since) * i / 6), (since + (until - since) * i / 6).strftime(label_format))
                       for i in range(6))
    value_ticks = tuple(Tick(y_for(value), format_value(value)) for value in (0, limit / 2, limit))
    return QuotaChart(
        width=WIDTH, height=HEIGHT, plot_left=left, plot_right=WIDTH - RIGHT, plot_top=TOP, plot_bottom=bottom,
        label_y=HEIGHT - 6, line=line, area=area, hard_y=y_for(limit),
        soft_y=y_for(soft_limit) if soft_limit is not None and soft_limit < limit else None,
        value_ticks=value_ticks, time_ticks=time_ticks,
        markers=tuple(Marker(x_for(m.created_at), m.number, f"v{m.number} {m.created_at:%Y-%m-%d %H:%M} UTC by {m.author}")
                      for m in markers),
        empty=not any(point.used for point in points),
    )
