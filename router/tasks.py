"""Celery tasks of the router: writing the ledger from Redis to the database, every second (beat)."""

from celery import shared_task
from django.conf import settings

from router.counters import redis_counters
from router.ledger import LedgerBusy


@shared_task
def drain_ledger() -> int:
    """Write the decisions and usage reports waiting in Redis to the database; returns how many."""
    if not settings.REDIS_URL:
        return 0  # without Redis every row is written when it is accepted
    try:
        return redis_counters().drain(wait_seconds=0)
    except LedgerBusy:
        return 0  # another drainer is at it
