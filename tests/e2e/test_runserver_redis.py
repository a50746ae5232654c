"""`manage.py runserver` (Django's development server, a thread per request) with REDIS_URL set keeps
counting on Redis: 150 decisions and 150 usage reports are all answered, /api/v1/health says Redis
counts, and /api/v1/quotas shows every one of them counted.

Its own clean copy and SQLite database, a Redis key prefix of its own, and a policy of one model under a
day's request and token quotas, so that what must be counted is exact. Needs Redis (REDIS_URL): outside
CI it skips without it, in CI it fails.
"""

import secrets
import uuid

import pytest

from tests.e2e.processes import REDIS_COUNTERS_DB, REPO, Deployment, RedisKeys, clean_copy, free_port, wait_until_serving

CALLS = 150
INPUT, OUTPUT = 100, 50
POLICY = """\
version: 1
default_tier: only
providers:
  - slug: vendor
    kind: anthropic
    credential_env: VENDOR_API_KEY
    quotas:
      - {name: requests-day, metric: requests, window: day, limit: 1000000, soft_limit_ratio: 1.0}
      - {name: tokens-day, metric: tokens, window: day, limit: 1000000000, soft_limit_ratio: 1.0}
models:
  - {key: vendor-model, provider: vendor, model_id: vendor-model-1, input_cost_per_mtok: 1, output_cost_per_mtok: 2, context_window: 200000}
tiers:
  - {slug: only, models: [vendor-model]}
categories:
  - {slug: general, fallback: allow}
routes:
  - {category: general, complexity: any, models: [vendor-model]}
"""


class CountingLeftRedis(AssertionError):
    """The defect this test was written for (fixed in bc411ec, failing before): under the development server
    each request thread made its own Redis connection for the counting scripts and never gave it back; after
    redis-py's default max_connections (100) the pool raised MaxConnectionsError "Too many connections",
    which the router took for a Redis outage: "Redis unreachable (MaxConnectionsError); ROUTER_REDIS_DOWN=db"
    in the log, `down_since` in /api/v1/health, and counting on the database although Redis never went down."""


@pytest.fixture(scope="module")
def runserver(e2e_dir, curl, redis_server):
    root = clean_copy(REPO, e2e_dir / "runserver")
    counters = RedisKeys(redis_server(REDIS_COUNTERS_DB), f"switchboard-e2e-{uuid.uuid4().hex[:10]}:")
    port = free_port()
    deployment = Deployment("runserver", root, port, curl, database="sqlite", redis=True, metrics_dir=root / "var" / "metrics",
                            extra_env={"SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_DEBUG": "1",
                                       "REDIS_URL": counters.url, "ROUTER_REDIS_PREFIX": counters.prefix})
    (root / "e2e-policy.yaml").write_text(POLICY)
    try:
        setup = deployment.shell("set -e\n.venv/bin/python manage.py migrate --no-input\n"
                                 ".venv/bin/python manage.py import_policy e2e-policy.yaml\n", timeout=300)
        assert setup.returncode == 0, setup.stdout + setup.stderr
        server = deployment.start("runserver", f"exec .venv/bin/python manage.py runserver --noreload 127.0.0.1:{port}")
        deployment.signalled.append(server)
        wait_until_serving(deployment)
        yield deployment
    finally:
        deployment.stop()
        deployment.kill_leftovers()
        counters.remove()


def used(deployment: Deployment, key: str) -> dict[str, float]:
    answer = deployment.http(key).get("/api/v1/quotas")
    assert answer.status == 200, answer
    return {row["name"]: float(row["used"]) for row in answer.json()["results"]}


def test_the_development_server_keeps_counting_on_redis(runserver):
    key = runserver.key("route,usage,read")
    client = runserver.http(key)
    before = used(runserver, key)

    failures, health_after = [], []  # (calls made, health's redis state)
    for number in range(CALLS):
        decision = client.post("/api/v1/route", json_body={"category": "general", "estimated_input_tokens": INPUT,
                                                           "estimated_output_tokens": OUTPUT})
        if decision.status != 200:
            failures.append((number, "route", decision))
            continue
        decision_id = decision.json()["decision_id"]
        report = client.post("/api/v1/usage", json_body={"decision_id": decision_id, "input_tokens": INPUT,
                                                         "output_tokens": OUTPUT, "idempotency_key": f"e2e-{decision_id}"})
        if report.status != 201:
            failures.append((number, "usage", report))
        if number % 10 == 9:
            health_after.append((number + 1, runserver.health().json()["redis"]))
    assert failures == []

    after = used(runserver, key)
    counted = {name: after[name] - before[name] for name in after}
    expected = {"requests-day": CALLS, "tokens-day": CALLS * (INPUT + OUTPUT)}
    health_after.append((CALLS, runserver.health().json()["redis"]))
    # Redis never went down: an outage in health or in the log is the router taking its own fault for one.
    outages = [(calls, state) for calls, state in health_after
               if state["ok"] is not True or state["counters"] != "redis" or "down_since" in state]
    logged = [line for line in runserver.services[0].log().splitlines() if "Redis unreachable" in line or "reachable again" in line]
    if outages or logged:
        raise CountingLeftRedis(f"health after n calls: {outages[:2]} (and {max(len(outages) - 2, 0)} more); "
                                f"runserver's log: {logged[:3]} ({len(logged)} such lines); counted {counted} of {expected}")
    assert counted == expected
