"""Prometheus counters of what this process answered: decisions by outcome, fallbacks by the reason the primary was
passed over, candidates passed over by reason, usage reports, unroutable requests, server errors, and answer times.

Under gunicorn with several workers set PROMETHEUS_MULTIPROC_DIR (an empty directory) so that
/metrics adds up every worker's counters instead of showing the one worker that answered
(router.ops renders them, with the gauges read from the shared state).
"""

from prometheus_client import Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

from router.records import DecisionRecord
from switchboard.vocabulary import Outcome, Verdict

DECISIONS = Counter("switchboard_decisions_total", "Routing decisions by outcome.", ["outcome"])
FALLBACKS = Counter(
    "switchboard_fallbacks_total", "Decisions that chose a fallback, by the reason the primary was passed over.", ["reason"],
)
SKIPPED = Counter(
    "switchboard_skipped_candidates_total", "Candidates passed over in fallbacks, escalations and refusals, by reason.", ["reason"],
)
USAGE_REPORTS = Counter("switchboard_usage_reports_total", "Usage reports recorded, by status.", ["status"])
UNROUTABLE = Counter("switchboard_unroutable_total", "Route requests the policy cannot serve, by error (no_route, unknown_category, "
                     "unknown_tier, no_default_tier, context_window), stored or not.", ["error"])
SERVER_ERRORS = Counter(
    "switchboard_server_errors_total", "Requests answered 500, by kind: redis (a Redis command or script failed) or internal.",
    ["kind"],
)
REQUEST_SECONDS = Histogram(
    "switchboard_request_duration_seconds", "Time to answer POST /api/v1/route and /api/v1/usage in the web process, by endpoint.",
    ["endpoint"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
PROCESS_COUNTERS = (DECISIONS, FALLBACKS, SKIPPED, USAGE_REPORTS, UNROUTABLE, SERVER_ERRORS, REQUEST_SECONDS)


# Each metric's child per label, as labels() gives it: labels() checks and looks up its arguments on every call, which
# costs the hot path (docs/performance.md).
_children: dict[tuple[MetricWrapperBase, str], MetricWrapperBase] = {}


def _labelled(metric: MetricWrapperBase, label: str) -> MetricWrapperBase:
    child = _children.get((metric, label))
    if child is None:
        child = _children[(metric, label)] = metric.labels(label)
    return child


def count_decision(decision: DecisionRecord) -> None:
    _labelled(DECISIONS, decision.outcome).inc()
    if decision.outcome == Outcome.PRIMARY:
        return
    for entry in decision.trace:
        if entry["verdict"] == Verdict.SKIPPED:
            _labelled(SKIPPED, entry["reason"]).inc()
    if decision.outcome == Outcome.FALLBACK and decision.trace[0]["verdict"] == Verdict.SKIPPED:
        _labelled(FALLBACKS, decision.trace[0]["reason"]).inc()


def observe_answer_time(endpoint: str, seconds: float) -> None:
    _labelled(REQUEST_SECONDS, endpoint).observe(seconds)


def count_server_error(kind: str) -> None:
    _labelled(SERVER_ERRORS, kind).inc()


def count_unroutable(error: str) -> None:
    _labelled(DECISIONS, Outcome.UNROUTABLE).inc()
    _labelled(UNROUTABLE, error).inc()


def count_usage(status: str) -> None:
    _labelled(USAGE_REPORTS, status).inc()
