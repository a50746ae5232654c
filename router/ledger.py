"""The ledger's write-behind path on Redis.

With Redis counters, the script that counts a decision or a usage report also appends its row to a
Redis stream, in the same atomic step; `drain` moves the stream into the database in batches (the
`router.tasks.drain_ledger` task every second, and every reader that needs the ledger complete).
Counters and their not-yet-written rows live and die together in Redis, so a rebuild from the
database after Redis lost its data is consistent; with Redis persistence (appendonly) nothing
accepted is lost on a restart either. The README's "Consistency contract" has the whole story.
"""

import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import redis
from django.db import transaction

from router.models import Decision, UsageEvent

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
# A drainer holds its lock this long; it renews it for every batch.
LOCK_MILLISECONDS = 30_000

DECISION_FIELDS = ("caller", "category", "complexity", "tier", "outcome", "model_key", "provider_slug", "primary_key",
                   "reason", "trace", "policy_version", "input_tokens", "output_tokens")
USAGE_FIELDS = ("caller", "model_key", "provider_slug", "input_tokens", "output_tokens", "status", "idempotency_key",
                "retry_after", "ratelimit_headers")

# A charge applied to a Redis counter: (quota hash key, bucket, amount, the key's lifetime).
AppliedCharge = tuple[str, int, int, int]


def decision_row(decision: Decision) -> str:
    row = {name: getattr(decision, name) for name in DECISION_FIELDS}
    row |= {"id": str(decision.id), "created_at": decision.created_at.isoformat(), "cost_usd": str(decision.cost_usd)}
    return json.dumps(row, separators=(",", ":"))


def usage_row(event: UsageEvent, charges: list[AppliedCharge]) -> str:
    row = {name: getattr(event, name) for name in USAGE_FIELDS}
    row |= {"id": str(event.id), "created_at": event.created_at.isoformat(), "cost_usd": str(event.cost_usd),
            "decision_id": str(event.decision_id) if event.decision_id else None, "charges": charges}
    return json.dumps(row, separators=(",", ":"))


def _common(row: dict) -> dict:
    return {"id": uuid.UUID(row["id"]), "created_at": datetime.fromisoformat(row["created_at"]),
            "cost_usd": Decimal(row["cost_usd"])}


def decision_from_row(row: dict) -> Decision:
    return Decision(**{name: row[name] for name in DECISION_FIELDS}, **_common(row))


def usage_from_row(row: dict) -> UsageEvent:
    decision_id = uuid.UUID(row["decision_id"]) if row["decision_id"] else None
    return UsageEvent(**{name: row[name] for name in USAGE_FIELDS}, **_common(row), decision_id=decision_id)


def store(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[dict]:
    """Write a batch of stream entries to the database in one transaction; repeating a batch changes nothing.

    Returns the usage rows that were not stored because their idempotency key was already used by a
    report stored earlier (one older than Redis remembers keys): their counts must be taken back.
    """
    decisions: list[Decision] = []
    events: list[tuple[UsageEvent, dict]] = []
    for _, fields in entries:
        row = json.loads(fields[b"row"])
        if fields[b"kind"] == b"decision":
            decisions.append(decision_from_row(row))
        else:
            events.append((usage_from_row(row), row))
    with transaction.atomic():
        Decision.objects.bulk_create(decisions, ignore_conflicts=True)
        named = {e.decision_id for e, _ in events if e.decision_id}
        known = set(Decision.objects.filter(id__in=named).values_list("id", flat=True)) if named else set()
        for event, _ in events:
            if event.decision_id and event.decision_id not in known:
                logger.error("Usage report %s names decision %s, which is not in the ledger; stored without it",
                             event.id, event.decision_id)
                event.decision_id = None
        UsageEvent.objects.bulk_create([e for e, _ in events], ignore_conflicts=True)
        stored = set(UsageEvent.objects.filter(id__in=[e.id for e, _ in events]).values_list("id", flat=True)) if events else set()
        for event, _ in events:
            if event.id in stored and event.decision_id:
                Decision.objects.filter(pk=event.decision_id).update(
                    input_tokens=event.input_tokens, output_tokens=event.output_tokens, cost_usd=event.cost_usd, reported=True,
                )
    return [row for event, row in events if event.id not in stored]


class LedgerBusy(Exception):
    """Another process held the drain lock for longer than this caller would wait."""


def drain(client: redis.Redis, stream: str, lock: str, take_back: Callable[[list[AppliedCharge]], None],
          wait_seconds: float = 5.0) -> int:
    """Move every entry of the stream into the database, oldest first; returns how many were moved.

    One drainer at a time (a Redis lock). A caller that finds the lock taken waits for it, up to
    `wait_seconds` (else LedgerBusy), and then drains what is left, so that after `drain` returns
    the database holds everything accepted before the call.
    """
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait_seconds
    while not client.set(lock, token, nx=True, px=LOCK_MILLISECONDS):
        if time.monotonic() >= deadline:
            raise LedgerBusy(f"Another process has been writing the ledger to the database for more than {wait_seconds:.0f} s.")
        time.sleep(0.005)
    moved = 0
    try:
        while entries := client.xrange(stream, "-", "+", count=BATCH_SIZE):
            duplicates = store(entries)
            for row in duplicates:
                logger.warning("Usage report %s repeats idempotency key %r of a stored report; not counted twice",
                               row["id"], row["idempotency_key"])
                take_back(row["charges"])
            client.xdel(stream, *[entry_id for entry_id, _ in entries])
            client.pexpire(lock, LOCK_MILLISECONDS)
            moved += len(entries)
    finally:
        if client.get(lock) == token.encode():
            client.delete(lock)
    return moved


def backlog(client: redis.Redis, stream: str) -> dict:
    """How many accepted rows wait in Redis for the database, and the age of the oldest."""
    length = client.xlen(stream)
    oldest = client.xrange(stream, "-", "+", count=1)
    age = time.time() - int(oldest[0][0].split(b"-")[0]) / 1000 if oldest else 0.0
    return {"rows": length, "oldest_seconds": round(max(age, 0.0), 3)}
