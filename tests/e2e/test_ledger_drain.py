"""Production: what was routed and reported reaches PostgreSQL within seconds, written from Redis by the
Celery worker on beat's schedule (the drain), without anything reading the audit."""

import time

import psycopg

from tests.e2e.processes import route, until

DRAIN_SECONDS = 10


def test_decisions_and_usage_reach_the_database_through_the_drain(production, postgres_database):
    key = production.key("route,usage,read")
    answer = route(production, key)
    assert answer.status == 200, answer
    decision = answer.json()["decision_id"]
    usage = production.http(key).post("/api/v1/usage", json_body={"decision_id": decision, "input_tokens": 1000, "output_tokens": 500})
    assert usage.status == 201, usage

    deadline = until(DRAIN_SECONDS)
    with psycopg.connect(postgres_database, autocommit=True) as connection:
        while True:
            stored = connection.execute(
                "SELECT (SELECT count(*) FROM router_decision WHERE id = %s), "
                "(SELECT count(*) FROM router_usageevent WHERE decision_id = %s AND output_tokens = 500)",
                (decision, decision),
            ).fetchone()
            if stored == (1, 1) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert stored == (1, 1), f"not in the database {DRAIN_SECONDS} s after it was answered (decision, usage): {stored}"
    backlog = production.health().json()["redis"]["ledger_backlog"]
    assert backlog["stale"] is False, backlog
