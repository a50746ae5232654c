"""Noticing that Redis came back without the data it held.

Redis holds the ledger rows it accepted and the drain has not yet written to the database. A Redis
without persistence that restarts, one that is flushed, or another one put in its place loses them,
and nothing else would tell. So every drain keeps a mark in Redis: a token, and the time before which
every row Redis had accepted is in the database; the database keeps the same (providers.RedisMark).
A drain that finds the mark missing, another token, or an older time (a restored snapshot) knows
Redis lost what it accepted after the database's time: it logs an ERROR naming the period, records
it for /api/v1/health and /metrics, and makes the counters rebuild from the ledger.
"""

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import redis
from django.utils import timezone

from providers.models import RedisMark

logger = logging.getLogger(__name__)

# How long health keeps saying that rows may have been lost.
REPORTED_FOR = timedelta(days=1)


def _read(raw: bytes | None) -> tuple[str, float] | None:
    if raw is None:
        return None
    value = json.loads(raw)
    return value["token"], value["drained_at"]


def keep_mark(client: redis.Redis, key: str, store: str, found: bytes | None, drained_at: datetime) -> bool:
    """After a drain that started at `drained_at`, with the mark `found` in Redis once it finished: compare the mark with
    the database's and move both to `drained_at`. Returns True when Redis lost data (the caller rebuilds the counters)."""
    row = RedisMark.objects.filter(store=store).first()
    mark = _read(found)
    if row is None:
        token = mark[0] if mark else uuid.uuid4().hex
        RedisMark.objects.get_or_create(store=store, defaults={"mark": token, "drained_at": drained_at})
        _write(client, key, token, drained_at)
        return False
    lost = mark is None or mark[0] != row.mark or mark[1] < row.drained_at.timestamp() - 0.001
    if not lost:
        # At most one write a second: the drain task runs every second, the audit's reads drain too.
        if drained_at - row.drained_at >= timedelta(seconds=1):
            RedisMark.objects.filter(pk=row.pk, drained_at__lt=drained_at).update(drained_at=drained_at)
            _write(client, key, row.mark, drained_at)
        return False
    token = uuid.uuid4().hex
    now = timezone.now()
    # One drainer reports a loss: the one whose update finds the database's mark as it read it.
    claimed = RedisMark.objects.filter(pk=row.pk, mark=row.mark).update(
        mark=token, drained_at=drained_at, lost_from=row.drained_at, lost_until=now)
    if claimed:
        _write(client, key, token, drained_at)
        how = "holds no mark" if mark is None else "holds another mark" if mark[0] != row.mark else "holds an older copy"
        logger.error("Redis came back without the data it held (it %s): decisions and usage reports answered between %s and %s "
                     "that were not yet written to the database may be lost. The counters are rebuilt from the database.",
                     how, row.drained_at.isoformat(), now.isoformat())
    return bool(claimed)


def _write(client: redis.Redis, key: str, token: str, drained_at: datetime) -> None:
    client.set(key, json.dumps({"token": token, "drained_at": drained_at.timestamp()}))


def last_loss(store: str) -> dict | None:
    """The period whose rows Redis may have lost, if that was noticed within REPORTED_FOR."""
    row = RedisMark.objects.filter(store=store, lost_until__gte=timezone.now() - REPORTED_FOR).first()
    if row is None:
        return None
    return {"from": row.lost_from.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "until": row.lost_until.astimezone(UTC).isoformat().replace("+00:00", "Z")}


def loss_timestamps(store: str) -> tuple[float, float] | None:
    """The last period whose rows Redis may have lost, in epoch seconds, ever."""
    row = RedisMark.objects.filter(store=store, lost_until__isnull=False).first()
    return (row.lost_from.timestamp(), row.lost_until.timestamp()) if row else None
