"""The ledger's write-behind path on Redis.

With Redis counters, the script that counts a decision or a usage report also appends its row to a
Redis stream, in the same atomic step; `drain` moves the stream into the database in batches (the
`router.tasks.drain_ledger` task every second, and the audit's reads, router.counters.flush_ledger).
Counters and their not-yet-written rows live and die together in Redis, so a rebuild from the
database after Redis lost its data is consistent; with Redis persistence (appendonly) nothing
accepted is lost on a restart either. docs/operations.md, "Consistency contract", has the whole story.
"""

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace

import redis
from django.db import connection, transaction
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock

from router.counting import LEDGER_FIELDS
from router.models import Decision, UsageEvent
from router.records import DECISION_COLUMNS, USAGE_COLUMNS, AppliedCharge, DecisionRecord, UsageRecord
from switchboard.vocabulary import UsageStatus

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
# A drainer holds its lock this long and renews it for every batch (a batch takes well under a
# second), so the lock of a drainer that crashed frees the stream within seconds.
LOCK_MILLISECONDS = 5_000


def store(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[dict]:
    """Write a batch of stream entries to the database in one transaction; repeating a batch changes nothing.

    Returns the usage rows that were not stored because their idempotency key was already used by a
    report stored earlier (one older than Redis remembers keys): their counts must be taken back.
    """
    decisions, events = split(entries)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            return store_in_postgresql(decisions, events)
        return store_with_orm(decisions, events)


def split(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> tuple[list[bytes], list[bytes]]:
    """The JSON rows of a batch of stream entries: decisions, and usage reports."""
    decisions = [fields[b"row"] for _, fields in entries if fields[b"kind"] == b"decision"]
    events = [fields[b"row"] for _, fields in entries if fields[b"kind"] != b"decision"]
    return decisions, events


def _recordset(columns: dict[str, str]) -> str:
    return ", ".join(f"{name} {sql_type}" for name, sql_type in columns.items())


INSERT_DECISIONS = f"""
    INSERT INTO router_decision ({", ".join(DECISION_COLUMNS)}, reported)
    SELECT {", ".join(DECISION_COLUMNS)}, false FROM jsonb_to_recordset(%s::jsonb) AS batch({_recordset(DECISION_COLUMNS)})
    ON CONFLICT DO NOTHING
"""
# One statement: store the reports (a report naming a decision that is not in the ledger is stored
# without it; one repeating the idempotency key of a stored report is not stored, checked here since
# a partitioned table holds no unique index on the key alone, and one drainer at a time writes), settle
# each stored report's decision (UsageRecord.settles), and tell for every row of the batch whether it
# is stored now or was already, and whether its decision was missing.
#
# Each row looks up its decision and its key on its own (LATERAL, skipped when it names none): on
# partitioned tables a join would read every partition whole. The decision's whole primary key then
# lets its update, and the check that a row was stored, read one partition.
INSERT_USAGE = f"""
    WITH batch AS (
        SELECT * FROM jsonb_to_recordset(%s::jsonb) AS batch({_recordset(USAGE_COLUMNS)})
    ), named AS (
        SELECT batch.*, decision.id AS found_id, decision.outcome AS found_outcome, decision.created_at AS found_created_at,
               earlier.id IS NOT NULL AS key_taken
        FROM batch
        LEFT JOIN LATERAL (SELECT id, outcome, created_at FROM router_decision
                           WHERE batch.decision_id IS NOT NULL AND router_decision.id = batch.decision_id LIMIT 1) AS decision ON true
        LEFT JOIN LATERAL (SELECT id FROM router_usageevent
                           WHERE batch.idempotency_key IS NOT NULL AND router_usageevent.idempotency_key = batch.idempotency_key
                           LIMIT 1) AS earlier ON true
    ), inserted AS (
        INSERT INTO router_usageevent ({", ".join(USAGE_COLUMNS)})
        SELECT {", ".join("found_id" if name == "decision_id" else name for name in USAGE_COLUMNS)}
        FROM named WHERE NOT key_taken
        ON CONFLICT DO NOTHING
        RETURNING id, decision_id, model_key, answered_instead, status, {", ".join(LEDGER_FIELDS)}
    ), reported AS (
        UPDATE router_decision AS decision
        SET {", ".join(f"{name} = CASE WHEN inserted.answered_instead THEN 0 ELSE inserted.{name} END" for name in LEDGER_FIELDS)},
            answered_by = CASE WHEN inserted.answered_instead THEN inserted.model_key ELSE '' END, reported = true,
            requests = CASE WHEN inserted.status = '{UsageStatus.NOT_SENT}' THEN 0 ELSE 1 END
        FROM inserted JOIN named ON named.id = inserted.id
        WHERE decision.id = named.found_id AND decision.outcome = named.found_outcome AND decision.created_at = named.found_created_at
    )
    SELECT named.id::text, named.decision_id::text,
           inserted.id IS NOT NULL
           OR EXISTS (SELECT 1 FROM router_usageevent AS stored WHERE stored.id = named.id AND stored.created_at = named.created_at),
           inserted.id IS NOT NULL AND named.decision_id IS NOT NULL AND inserted.decision_id IS NULL
    FROM named LEFT JOIN inserted ON inserted.id = named.id
"""


def _json_array(rows: list[bytes]) -> str:
    return (b"[" + b",".join(rows) + b"]").decode()


def store_in_postgresql(decisions: list[bytes], events: list[bytes]) -> list[dict]:
    """The batch as two statements that PostgreSQL parses itself: the rows are JSON already."""
    with connection.cursor() as cursor:
        if decisions:
            cursor.execute(INSERT_DECISIONS, [_json_array(decisions)])
        if not events:
            return []
        cursor.execute(INSERT_USAGE, [_json_array(events)])
        outcomes = cursor.fetchall()
    for event_id, decision_id, _, decision_missing in outcomes:
        if decision_missing:
            logger.error("Usage report %s names decision %s, which is not in the ledger; stored without it", event_id, decision_id)
    duplicates = {event_id for event_id, _, stored, _ in outcomes if not stored}
    if not duplicates:
        return []
    rows = [json.loads(event) for event in events]
    return [row for row in rows if row["id"] in duplicates]


def store_with_orm(decisions: list[bytes], events: list[bytes]) -> list[dict]:
    """The batch through the ORM, for databases other than PostgreSQL."""
    Decision.objects.bulk_create([DecisionRecord.from_row(json.loads(row)).to_model() for row in decisions], ignore_conflicts=True)
    rows = [json.loads(row) for row in events]
    reports = [UsageRecord.from_row(row) for row in rows]
    named = {report.decision_id for report in reports if report.decision_id}
    known = set(Decision.objects.filter(id__in=named).values_list("id", flat=True)) if named else set()
    for index, report in enumerate(reports):
        if report.decision_id and report.decision_id not in known:
            logger.error("Usage report %s names decision %s, which is not in the ledger; stored without it",
                         report.id, report.decision_id)
            reports[index] = replace(report, decision_id=None)
    # Checked here rather than left to a unique index, which a partitioned table cannot hold.
    keys = {report.idempotency_key for report in reports if report.idempotency_key}
    taken = set(UsageEvent.objects.filter(idempotency_key__in=keys).exclude(id__in=[report.id for report in reports])
                .values_list("idempotency_key", flat=True)) if keys else set()
    UsageEvent.objects.bulk_create([report.to_model() for report in reports if report.idempotency_key not in taken], ignore_conflicts=True)
    stored = set(UsageEvent.objects.filter(id__in=[report.id for report in reports]).values_list("id", flat=True)) if reports else set()
    for report in reports:
        if report.id in stored and report.decision_id:
            Decision.objects.filter(pk=report.decision_id).update(**report.settles())
    return [row for report, row in zip(reports, rows, strict=True) if report.id not in stored]


class LedgerBusy(Exception):
    """Another process held the drain lock for longer than this caller would wait."""


def drain(client: redis.Redis, stream: str, lock: str, take_back: Callable[[list[AppliedCharge]], None],
          wait_seconds: float = 5.0) -> int:
    """Move the stream's entries into the database, oldest first, in batches until one comes back
    short; returns how many were moved.

    One drainer at a time (a Redis lock). A caller that finds the lock taken waits for it, up to
    `wait_seconds` (else LedgerBusy), and then drains what is left, so that after `drain` returns
    the database holds everything accepted before the call.
    """
    drainer = client.lock(lock, timeout=LOCK_MILLISECONDS / 1000, sleep=0.005, blocking_timeout=wait_seconds)
    if not drainer.acquire():
        raise LedgerBusy(f"Another process has been writing the ledger to the database for more than {wait_seconds:.0f} s.")
    moved = 0
    try:
        # A batch shorter than BATCH_SIZE held everything the stream had: the rows accepted since are
        # the next drain's. Chasing them batch after batch would write a handful of rows per transaction.
        batch_was_full = True
        while batch_was_full and (entries := client.xrange(stream, "-", "+", count=BATCH_SIZE)):
            batch_was_full = len(entries) == BATCH_SIZE
            duplicates = store(entries)
            for row in duplicates:
                logger.warning("Usage report %s repeats idempotency key %r of a stored report; not counted twice",
                               row["id"], row["idempotency_key"])
                take_back(row["charges"])
            client.xdel(stream, *[entry_id for entry_id, _ in entries])
            moved += len(entries)
            try:
                drainer.reacquire()
            except LockNotOwnedError:
                # The lock expired during the batch and another drainer took the stream: it writes the rest.
                logger.warning("The drain lock %s expired during a batch; leaving the stream to the drainer holding it", lock)
                return moved
    finally:
        release(drainer)
    return moved


def release(lock: Lock) -> None:
    """Let go of a lock unless it expired and another process took it meanwhile (redis-py's compare-and-delete)."""
    # An expired lock guards another holder's work now, or nobody's: nothing to let go of.
    with contextlib.suppress(LockNotOwnedError):
        lock.release()


def backlog(client: redis.Redis, stream: str, now: float | None = None) -> dict:
    """How many accepted rows wait in Redis for the database, and the age of the oldest (at `now`, default the present)."""
    length = client.xlen(stream)
    oldest = client.xrange(stream, "-", "+", count=1)
    age = (time.time() if now is None else now) - int(oldest[0][0].split(b"-")[0]) / 1000 if oldest else 0.0
    return {"rows": length, "oldest_seconds": round(max(age, 0.0), 3)}
