"""The gauges /metrics reads at scrape time from the shared state (the counters, the catalog, the ledger stream),
so that every web process reports the same values. monitoring/prometheus-rules.yml alerts on them and
monitoring/grafana-dashboard.json charts them."""

import contextlib
import time
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Max
from prometheus_client.core import GaugeMetricFamily

from providers.models import AvailabilityCheck
from router import counters
from router.counters import marks
from router.selectors import model_cooldowns, quota_status
from router.snapshot import current_snapshot
from switchboard.vocabulary import Availability

QUOTA = ["provider", "quota"]
MODEL = ["provider", "model"]


def _quota_families(now: float) -> Iterator[GaugeMetricFamily]:
    ratio = GaugeMetricFamily("switchboard_quota_ratio", "Used share of each quota's limit.", labels=QUOTA)
    used = GaugeMetricFamily("switchboard_quota_used", "Counted usage of each quota.", labels=[*QUOTA, "metric"])
    soft = GaugeMetricFamily("switchboard_quota_soft_limit_ratio", "Each quota's soft limit, as a share of its limit.", labels=QUOTA)
    eta = GaugeMetricFamily("switchboard_quota_hard_limit_eta_seconds",
                            "Seconds until the last hour's burn rate reaches the quota's hard limit; absent when it does not.", labels=QUOTA)
    try:
        rows = quota_status(now)
    except counters.CountersUnavailable:
        rows = []  # Redis is down and ROUTER_REDIS_DOWN=refuse: the rest of the metrics still matter (health says why)
    for row in rows:
        quota = row.quota
        ratio.add_metric([quota.provider, quota.name], row.ratio)
        used.add_metric([quota.provider, quota.name, quota.metric], row.used)
        soft.add_metric([quota.provider, quota.name], quota.soft_limit_ratio)
        if row.hard_at is not None:
            eta.add_metric([quota.provider, quota.name], max(row.hard_at - now, 0.0))
    yield from (ratio, used, soft, eta)


def _model_families(now: float) -> Iterator[GaugeMetricFamily]:
    cooling = GaugeMetricFamily("switchboard_model_cooldown_seconds",
                                "Seconds left of each model's cooldown after reported failures or a provider's retry-after (0: none).",
                                labels=MODEL)
    unavailable = GaugeMetricFamily("switchboard_model_unavailable",
                                    "1 when the last availability check (or a not_found report) found the model unavailable.", labels=MODEL)
    cooldowns = model_cooldowns(now)
    for model in current_snapshot().models.values():
        state = cooldowns.get(model.key)
        left = state.cooldown_until - now if state and state.cooldown_until else 0.0
        cooling.add_metric([model.provider, model.key], max(left, 0.0))
        unavailable.add_metric([model.provider, model.key], 1.0 if model.availability == Availability.UNAVAILABLE else 0.0)
    yield from (cooling, unavailable)


def _refresh_families(now: float) -> Iterator[GaugeMetricFamily]:
    age = GaugeMetricFamily("switchboard_availability_refresh_age_seconds", "Seconds since the last availability check.",
                            labels=["provider"])
    failing = GaugeMetricFamily("switchboard_availability_refresh_failing",
                                "1 when the provider's last availability check failed (its models stay unknown meanwhile).",
                                labels=["provider"])
    checks = AvailabilityCheck.objects.filter(kind=AvailabilityCheck.Kind.AVAILABILITY)
    for row in checks.values("provider__slug").annotate(last=Max("started_at")):
        age.add_metric([row["provider__slug"]], now - row["last"].timestamp())
        last = checks.filter(provider__slug=row["provider__slug"], started_at=row["last"]).values_list("ok", flat=True).first()
        failing.add_metric([row["provider__slug"]], 0.0 if last else 1.0)
    yield from (age, failing)


def _counting_families() -> Iterator[GaugeMetricFamily]:
    backend = GaugeMetricFamily("switchboard_counting_backend",
                                "1 for where this process counts now: redis; database (no Redis configured); failover_database "
                                "(Redis configured but unreachable, ROUTER_REDIS_DOWN=db); refusing (unreachable, =refuse).",
                                labels=["backend"])
    backlog = GaugeMetricFamily("switchboard_ledger_backlog_seconds",
                                "Age of the oldest accepted row waiting in Redis for the database (0 without Redis).")
    rows = GaugeMetricFamily("switchboard_ledger_backlog_rows", "Accepted rows waiting in Redis for the database.")
    lost = counters.outage.since is not None
    if not settings.REDIS_URL:
        current = "database"
    elif lost:
        current = "failover_database" if settings.ROUTER_REDIS_DOWN == "db" else "refusing"
    else:
        current = "redis"
    for name in ("redis", "database", "failover_database", "refusing"):
        backend.add_metric([name], 1.0 if name == current else 0.0)
    waiting = {"rows": 0, "oldest_seconds": 0.0}
    if current == "redis":
        # Redis going away between two reads reads as no backlog: switchboard_counting_backend says so at the next scrape.
        with contextlib.suppress(*counters.RedisUnreachable):
            waiting = counters.redis_counters().backlog()
    backlog.add_metric([], waiting["oldest_seconds"])
    rows.add_metric([], waiting["rows"])
    yield from (backend, backlog, rows)
    if settings.REDIS_URL:
        lost = marks.loss_timestamps(counters.mark_store())
        for bound, value in (("from", lost[0] if lost else 0), ("until", lost[1] if lost else 0)):
            yield GaugeMetricFamily(f"switchboard_redis_data_lost_{bound}_timestamp_seconds",
                                    f"Start and end of the last period whose answered rows Redis may have lost ({bound}; 0: never).",
                                    value=value)


class StateCollector:
    """The gauges of the shared state, collected at each scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        yield from _quota_families(now)
        yield from _model_families(now)
        yield from _refresh_families(now)
        yield from _counting_families()
