"""Quota windows as numbered buckets, shared by the Redis and the database counters.

A rolling window is cut into 60 buckets (a minute into seconds, an hour into minutes, a day into
24-minute and a week into 168-minute buckets); a bucket counts for as long as any part of it lies
inside the window, so usage is released up to one bucket late, never early: the router may be
conservative, it never admits more than a quota allows. A calendar window is one bucket per period,
starting at 00:00 UTC (weeks on Monday).
"""

import math

from router.snapshot import QuotaSpec

BUCKETS_PER_WINDOW = 60
# 1970-01-01 was a Thursday; calendar weeks start on Mondays, the first of which was 1970-01-05.
WEEK_EPOCH_OFFSET = 4 * 86400


def bucket_seconds(quota: QuotaSpec) -> int:
    if quota.reset == "calendar":
        return quota.window_seconds
    return quota.window_seconds // BUCKETS_PER_WINDOW


def _offset(quota: QuotaSpec) -> int:
    return WEEK_EPOCH_OFFSET if quota.reset == "calendar" and quota.window == "week" else 0


def bucket_at(quota: QuotaSpec, timestamp: float) -> int:
    return math.floor((timestamp - _offset(quota)) / bucket_seconds(quota))


def bucket_start(quota: QuotaSpec, bucket: int) -> float:
    return bucket * bucket_seconds(quota) + _offset(quota)


def oldest_counted_bucket(quota: QuotaSpec, now: float) -> int:
    """The first bucket that still counts at `now`."""
    if quota.reset == "calendar":
        return bucket_at(quota, now)
    return bucket_at(quota, now - quota.window_seconds)


def bucket_frees_at(quota: QuotaSpec, bucket: int) -> float:
    """When usage counted in `bucket` stops counting."""
    if quota.reset == "calendar":
        return bucket_start(quota, bucket + 1)
    return bucket_start(quota, bucket + 1) + quota.window_seconds
