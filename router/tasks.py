"""Celery tasks of the router: writing the ledger from Redis to the database every second, and pruning it every hour (beat)."""

from celery import shared_task
from django.conf import settings

from router.counters import redis_counters
from router.ledger import LedgerBusy
from router.retention import Retention, prune


@shared_task
def drain_ledger() -> int:
    """Write the decisions and usage reports waiting in Redis to the database; returns how many."""
    if not settings.REDIS_URL:
        return 0  # without Redis every row is written when it is accepted
    try:
        return redis_counters().drain(wait_seconds=0)
    except LedgerBusy:
        return 0  # another drainer is at it


@shared_task
def prune_ledger() -> dict:
    """Delete what the ledger keeps no longer (router.retention); returns how many rows, per table."""
    pruned = prune(Retention.from_settings())
    return {"decisions": pruned.decisions, "usage_events": pruned.usage_events, "minutes": pruned.minutes, "hours": pruned.hours}
