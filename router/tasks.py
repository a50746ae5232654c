"""Celery tasks of the router: writing the ledger from Redis to the database every second, pruning it every hour,
and creating its partitions for the days ahead every day (beat)."""

import logging

from celery import shared_task
from django.conf import settings

from router.counters import RedisUnreachable, redis_counters
from router.database_outage import DATABASE_ERRORS
from router.ledger import LedgerBusy
from router.partitions import create_ahead
from router.retention import Retention, prune

logger = logging.getLogger(__name__)


@shared_task
def drain_ledger() -> int:
    """Write the decisions and usage reports waiting in Redis to the database; returns how many."""
    if not settings.REDIS_URL:
        return 0  # without Redis every row is written when it is accepted
    try:
        return redis_counters().drain(wait_seconds=0)
    except LedgerBusy:
        return 0  # another drainer is at it
    except DATABASE_ERRORS as exc:
        # The rows stay in the Redis stream, written on the first run after the database is back.
        logger.warning("Ledger not written: the database cannot be reached (%s); the rows wait in Redis", exc.__class__.__name__)
        return 0
    except RedisUnreachable as exc:
        # Rows leave the stream only once written (router.ledger.drain), and writing one again changes nothing.
        logger.warning("Ledger drain stopped: Redis cannot be reached (%s); the next run drains what is left", exc.__class__.__name__)
        return 0


@shared_task
def prune_ledger() -> dict:
    """Delete what the ledger keeps no longer (router.retention); returns how many rows, per table."""
    pruned = prune(Retention.from_settings())
    return {"decisions": pruned.decisions, "usage_events": pruned.usage_events, "minutes": pruned.minutes, "hours": pruned.hours,
            "partitions": [dropped.name for dropped in pruned.dropped]}


@shared_task
def create_ledger_partitions() -> list[str]:
    """Create the ledger's partitions for the days ahead on PostgreSQL (router.partitions); returns their names."""
    return create_ahead()
