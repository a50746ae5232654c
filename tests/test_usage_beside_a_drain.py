"""No request waits on the ledger's drain: a usage report naming a decision Redis does not remember
(unknown, or older than its memory) is answered from the database, or refused 404, at once, while
another process holds the drain lock."""

import subprocess
import sys
import time
import uuid
from decimal import Decimal

import pytest

from router.counters import flush_ledger, redis_counters
from tests.calls import post, quotas_used, report, route
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_route

# Holds the drain lock as a drainer at work does, renewing it, until its stdin closes.
HOLD_THE_DRAIN_LOCK = """
import sys, threading, redis
client = redis.Redis.from_url(sys.argv[1])
lock = client.lock(sys.argv[2], timeout=5)
assert lock.acquire(blocking_timeout=10)
print("held", flush=True)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
while not stop.wait(1):
    lock.reacquire()
lock.release()
"""


@pytest.fixture
def policy(db):
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai, input_cost_per_mtok=Decimal("2.5"), output_cost_per_mtok=Decimal(10))
    QuotaFactory(provider=openai, name="tokens", metric="tokens", window="day", limit=100_000)
    QuotaFactory(provider=openai, name="one-a-minute", metric="requests", window="minute", limit=1, soft_limit_ratio=1,
                 models=[gpt4o])
    make_route("general", [gpt4o])
    make_route(CategoryFactory(slug="critical", fallback="never"), [gpt4o])


@pytest.fixture
def hold_drain_lock(redis_client, settings):
    """Starts another process holding the drain lock, as a drainer busy with a long batch does."""
    holders = []

    def hold() -> None:
        holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_DRAIN_LOCK, settings.REDIS_URL, f"{redis_counters().prefix}draining"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        holders.append(holder)
        assert holder.stdout.readline().strip() == "held"

    yield hold
    for holder in holders:
        holder.stdin.close()
        holder.wait(timeout=10)


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    answer = call()
    return time.perf_counter() - started, answer


def test_a_report_naming_an_unknown_decision_is_refused_404_at_once(api, policy, hold_drain_lock):
    hold_drain_lock()
    report(api, expect=404, decision_id=str(uuid.uuid4()), input_tokens=1, output_tokens=1)  # warm up
    latencies = []
    for _ in range(100):
        seconds, response = timed(lambda: post(api, "/api/v1/usage", decision_id=str(uuid.uuid4()), input_tokens=1, output_tokens=1))
        assert response.status_code == 404
        assert response.json()["error"] == "unknown_decision"
        latencies.append(seconds)

    # Waiting on the drain lock would take its 5 s; how fast the answer is belongs to the bench, not to this test.
    assert max(latencies) < 1.0


def test_a_report_naming_a_decision_redis_no_longer_remembers_is_counted_from_the_database_at_once(
        api, policy, redis_client, hold_drain_lock):
    decision = route(api, category="general", estimated_input_tokens=100, estimated_output_tokens=100)
    flush_ledger()
    redis_client.delete(redis_counters().decision_key(decision["decision_id"]))  # its memory has expired
    hold_drain_lock()

    seconds, body = timed(lambda: report(api, decision_id=decision["decision_id"], input_tokens=40, output_tokens=10))
    again = post(api, "/api/v1/usage", decision_id=decision["decision_id"], input_tokens=40, output_tokens=10)

    assert seconds < 0.5
    assert body["decision_id"] == decision["decision_id"]
    assert again.status_code == 409
    assert again.json()["error"] == "decision_already_reported"
    assert quotas_used(api)["tokens"] == 50


def test_a_report_naming_a_refusal_not_yet_written_to_the_database_says_it_was_a_refusal(api, policy, hold_drain_lock):
    route(api, category="critical")
    hold_drain_lock()
    refused = route(api, expect=429, category="critical")

    seconds, response = timed(lambda: post(api, "/api/v1/usage", decision_id=refused["decision_id"], input_tokens=1, output_tokens=1))

    assert seconds < 0.5
    assert response.status_code == 400
    assert response.json()["error"] == "decision_refused"
    assert quotas_used(api)["one-a-minute"] == 1

