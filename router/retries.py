"""Safe retries of POST /api/v1/route: the same `request_id` from the same API key answers the same decision.

A service that got no answer (a read timeout, a dropped connection) sends its request again with the same
request_id; within the decision memory (an hour) it gets the first answer again, counted once. The same id
with another body is the caller's bug: 409 `request_id_reused`. Without a request_id none of this runs.

With Redis counters the memory is one Redis key per (API key, request_id), claimed before deciding, so that
two copies arriving together make one decision: the second waits for the first one's answer. With database
counters the memory is the decision row itself: the first half of its id is derived from (API key, request_id)
and the second from the body, so a repeat finds it by primary key, a copy arriving at the same time cannot store a
second one, and a decision under the same request_id with another body is found by the first half alone.
"""

import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
from django.db import IntegrityError, connection, transaction

from router import counters
from router.answers import JsonAnswer
from router.counters import RedisUnreachable
from router.counters.redis import DECISION_MEMORY_SECONDS
from router.engine import RouteRequest
from router.models import Decision
from router.records import DecisionRecord

logger = logging.getLogger(__name__)

NAMESPACE = uuid.UUID("5d0c62f4-4a8e-4f55-9a3f-2f7b1c8e9d11")
# How long a copy waits for the answer of the copy that is deciding before asking its caller to retry.
WAIT_SECONDS = 2.0
# How long a claim outlives a process that died deciding: then a copy decides.
CLAIM_SECONDS = 30


class RequestIdReused(Exception):
    """The request_id was used for another body, or longer ago than the decision memory."""


class RequestInProgress(Exception):
    """A copy of this request is still being decided."""


def fingerprint(request: RouteRequest) -> str:
    """What makes two routing requests the same request: every field but the request_id."""
    fields = [request.category, request.complexity, request.tier, request.estimated_input_tokens, request.estimated_output_tokens,
              request.estimated_cache_read_tokens, sorted(request.exclude), request.attempt]
    if request.apis is not None:
        fields.append(sorted(request.apis))
    return hashlib.sha256(orjson.dumps(fields)).hexdigest()[:32]


def answer_once(key_id: str, request: RouteRequest, decide: Callable[[uuid.UUID | None], JsonAnswer],
                replay: Callable[[DecisionRecord], JsonAnswer]) -> JsonAnswer:
    """The answer to `request`: the stored one if its request_id was answered before, else `decide(decision_id)`'s
    (a decision_id of None lets the decision pick its own); `replay` answers a stored decision again.
    Raises RequestIdReused and RequestInProgress."""
    body = fingerprint(request)
    backend = counters.current(refuse=False)
    named = f"{key_id}\n{request.request_id}"
    if backend.name == "redis":
        try:
            return _on_redis(backend.client, f"{backend.prefix}request:{uuid.uuid5(NAMESPACE, named).hex}", body, decide)
        except RedisUnreachable as exc:
            counters.fail_over(exc, refuse=False)
    return _on_database(_derived_id(named, body), decide, replay)


def _derived_id(named: str, body: str) -> uuid.UUID:
    """The id of the decision answering (API key, request_id) with this body: 8 bytes from each."""
    own, of_body = (hashlib.sha256(text.encode()).digest()[:8] for text in (named, body))
    return uuid.UUID(bytes=own + of_body, version=5)


def _on_redis(client, key: str, body: str, decide: Callable[[uuid.UUID | None], JsonAnswer]) -> JsonAnswer:
    deadline = time.monotonic() + WAIT_SECONDS
    while not client.set(key, orjson.dumps({"fingerprint": body}), nx=True, ex=CLAIM_SECONDS):
        stored = client.get(key)
        if stored is None:
            continue  # the copy that claimed it failed before deciding and let go: this one decides
        earlier = orjson.loads(stored)
        if earlier["fingerprint"] != body:
            raise RequestIdReused("It was used within the last hour for a routing request with another body.")
        if "status" in earlier:
            headers = {"Retry-After": earlier["retry_after"]} if earlier["retry_after"] else None
            return JsonAnswer(earlier["status"], earlier["body"].encode(), headers)
        if time.monotonic() >= deadline:
            raise RequestInProgress("A copy of this request is still being decided.")
        time.sleep(0.01)
    try:
        answer = decide(None)
    except BaseException:
        with contextlib.suppress(*RedisUnreachable):
            client.delete(key)  # nothing was decided (an error answer): a retry decides afresh
        raise
    try:
        client.set(key, orjson.dumps({"fingerprint": body, "status": answer.status, "body": answer.content.decode(),
                                      "retry_after": answer.header("Retry-After")}), ex=DECISION_MEMORY_SECONDS)
    except RedisUnreachable as exc:
        # Decided (on the database, if Redis went meanwhile) but not remembered: a copy sent later decides again.
        logger.warning("The answer to a routing request_id could not be kept (%s)", exc.__class__.__name__)
    return answer


def _on_database(decision_id: uuid.UUID, decide: Callable[[uuid.UUID | None], JsonAnswer],
                 replay: Callable[[DecisionRecord], JsonAnswer]) -> JsonAnswer:
    if connection.vendor != "postgresql":
        return _decide_once(decision_id, decide, replay)
    # On PostgreSQL the decisions are partitioned by day (router.partitions): their primary key holds the day, so
    # it cannot refuse a second row under one id. Copies of one request take turns on an advisory lock instead.
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [str(decision_id)])
        return _decide_once(decision_id, decide, replay)


def _decide_once(decision_id: uuid.UUID, decide: Callable[[uuid.UUID | None], JsonAnswer],
                 replay: Callable[[DecisionRecord], JsonAnswer]) -> JsonAnswer:
    stored = Decision.objects.filter(pk=decision_id).first()
    if stored is None:
        if _same_request_id(decision_id).exclude(pk=decision_id).exists():  # not a copy that stored it since
            raise RequestIdReused("It was used within the last hour for a routing request with another body.")
        try:
            return decide(decision_id)
        except IntegrityError:
            stored = Decision.objects.get(pk=decision_id)  # a copy arriving at the same time stored it first
    if stored.created_at < datetime.now(tz=UTC) - timedelta(seconds=DECISION_MEMORY_SECONDS):
        raise RequestIdReused("It was used more than an hour ago: use a new one for a new request.")
    return replay(DecisionRecord.from_model(stored))


def _same_request_id(decision_id: uuid.UUID):
    """The decisions of the last hour whose id starts with the same 8 bytes: answers to the same (API key, request_id),
    whatever their body."""
    prefix = decision_id.bytes[:8]
    return Decision.objects.filter(pk__gte=uuid.UUID(bytes=prefix + bytes(8)), pk__lte=uuid.UUID(bytes=prefix + b"\xff" * 8),
                                   created_at__gte=datetime.now(tz=UTC) - timedelta(seconds=DECISION_MEMORY_SECONDS))
