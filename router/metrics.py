"""Prometheus metrics: decisions by outcome, fallbacks by reason, usage reports, quota ratios, refresh age.

Under gunicorn with several workers set PROMETHEUS_MULTIPROC_DIR (an empty directory) so that
/metrics adds up every worker's counters instead of showing the one worker that answered.
"""

import os
import time

from prometheus_client import CollectorRegistry, Counter, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

DECISIONS = Counter("switchboard_decisions_total", "Routing decisions by outcome.", ["outcome"])
PASSED_OVER = Counter(
    "switchboard_fallbacks_total", "Candidates passed over in fallbacks and refusals, by reason.", ["reason"],
)
USAGE_REPORTS = Counter("switchboard_usage_reports_total", "Usage reports recorded, by status.", ["status"])


def count_decision(result) -> None:
    DECISIONS.labels(result.outcome).inc()
    if result.outcome != "primary":
        for entry in result.trace:
            if entry["verdict"] == "skipped":
                PASSED_OVER.labels(entry["reason"]).inc()


def count_usage(status: str) -> None:
    USAGE_REPORTS.labels(status).inc()


class StateCollector:
    """Gauges read at scrape time from the shared state, so every worker reports the same values."""

    def collect(self):
        from django.db.models import Max

        from providers.models import AvailabilityCheck
        from router.accounting import CountersUnavailable
        from router.services import quota_status

        ratio = GaugeMetricFamily("switchboard_quota_ratio", "Used share of each quota's limit.", labels=["provider", "quota"])
        used = GaugeMetricFamily("switchboard_quota_used", "Counted usage of each quota.", labels=["provider", "quota", "metric"])
        try:
            rows = quota_status()
        except CountersUnavailable:
            rows = []  # Redis is down and ROUTER_REDIS_DOWN=refuse: the rest of the metrics still matter (health says why)
        for row in rows:
            quota = row["quota"]
            ratio.add_metric([quota.provider, quota.name], row["ratio"])
            used.add_metric([quota.provider, quota.name, quota.metric], row["used"])
        yield ratio
        yield used

        age = GaugeMetricFamily(
            "switchboard_availability_refresh_age_seconds", "Seconds since the last availability check.", labels=["provider"],
        )
        latest = (
            AvailabilityCheck.objects.filter(kind=AvailabilityCheck.Kind.AVAILABILITY)
            .values("provider__slug").annotate(last=Max("started_at"))
        )
        for row in latest:
            age.add_metric([row["provider__slug"]], time.time() - row["last"].timestamp())
        yield age


def render() -> bytes:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in (DECISIONS, PASSED_OVER, USAGE_REPORTS):
            registry.register(collector)
    registry.register(StateCollector())
    return generate_latest(registry)
