"""Geometry for the overview's server-side SVG chart: decisions per hour, stacked by outcome,
with the fallback rate (fallbacks and refusals over all decisions) as a line on its own 0-100% scale.

Pure functions from the selector's buckets to coordinates; the template only draws them.
"""

from dataclasses import dataclass

from dashboard.selectors import Volume

WIDTH = 960
HEIGHT = 190
LEFT = 40  # room for the count axis labels
RIGHT = 40  # room for the rate axis labels
TOP = 10
BOTTOM = 24  # room for the hour labels


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
    label: str  # the hour, shown under every few bars
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
        hour = bucket.hour.strftime("%H:00")
        rate_text = f", {rate * 100:.0f}% not primary" if rate is not None else ""
        bars.append(Bar(
            x=round(x, 1), width=round(bar_width, 1), segments=tuple(segments), label=hour,
            show_label=index % 3 == 0,
            title=f"{hour} UTC: {bucket.total} decisions, {bucket.fallback} fallback, {bucket.refused} refused{rate_text}",
        ))
    count_ticks = tuple(Tick(round(y_for(v), 1), str(v)) for v in (0, top_count // 2, top_count) if v or top_count)
    rate_ticks = tuple(Tick(round(bottom - plot_height * r, 1), f"{r * 100:.0f}%") for r in (0, 0.5, 1))
    return Chart(
        width=WIDTH, height=HEIGHT, plot_left=LEFT, plot_right=WIDTH - RIGHT, plot_top=TOP, plot_bottom=bottom,
        plot_height=plot_height, center_x=LEFT + plot_width / 2, center_y=TOP + plot_height / 2, label_y=HEIGHT - 6,
        bars=tuple(bars), count_ticks=tuple(dict.fromkeys(count_ticks)), rate_ticks=rate_ticks,
        rate_points=" ".join(f"{x},{y}" for x, y in points), rate_dots=tuple(points), empty=volume.total == 0,
    )
