"""Routing survives a PostgreSQL outage: with Redis up, gunicorn goes on deciding and taking usage reports from the
policy and API keys it holds while a PostgreSQL of the test's own is stopped for 30 s under load; every answer is
JSON, what needs the database answers 503 database_unavailable with Retry-After, health says degraded, and every
decision and report answered 200 or 201 is in PostgreSQL once it is back. A revocation applies as soon as it is."""

import threading
import time
import uuid

import psycopg
import pytest

from tests.postgres_servers import PostgresServer
from tests.redis_servers import RedisServer
from tests.web_servers import Gunicorn, manage, production_env

OUTAGE_SECONDS = 30
CLIENTS = 3
ROUTE = {"tier": "cheap", "estimated_input_tokens": 100, "estimated_output_tokens": 50}
# No quota: every call of the load is admitted, so any answer but 200 and 201 is the outage's.
POLICY = """
version: 1
default_tier: cheap
providers:
  - {slug: openai, kind: openai, credential_env: OPENAI_API_KEY}
models:
  - {key: gpt-4o-mini, provider: openai, model_id: gpt-4o-mini, context_window: 128000}
tiers:
  - {slug: cheap, models: [gpt-4o-mini]}
categories: []
routes: []
"""


@pytest.fixture
def stack(tmp_path, request):
    """PostgreSQL and Redis of the test's own, migrated, a policy without quotas imported; gunicorn (2 workers) on them,
    with the settings (and "workers") a test passes as the fixture's parameter."""
    settings = dict(getattr(request, "param", {}))
    workers = int(settings.pop("workers", 2))
    postgres = PostgresServer().start()
    redis_server = RedisServer(tmp_path, "--appendonly", "yes").start()
    gunicorn = None
    try:
        postgres.create_database()
        env = production_env(tmp_path, DATABASE_URL=postgres.url, REDIS_URL=redis_server.url, ALLOWED_HOSTS="127.0.0.1",
                             **settings)
        manage(env, "migrate", "--no-input")
        (tmp_path / "policy.yaml").write_text(POLICY)
        manage(env, "import_policy", str(tmp_path / "policy.yaml"))
        keys = {name: manage(env, "create_api_key", name, "--scopes", "route,usage,read").strip().splitlines()[-1]
                for name in ("service", "newcomer", "revoked-later")}
        gunicorn = Gunicorn(env, tmp_path / "gunicorn.log", workers=workers).start()
        yield postgres, gunicorn, keys, env
    finally:
        if gunicorn:
            gunicorn.stop()
        redis_server.kill()
        postgres.remove()


class Load:
    """CLIENTS threads, each routing a call and reporting its usage, again and again until stopped."""

    def __init__(self, gunicorn: Gunicorn, key: str) -> None:
        self.gunicorn, self.key = gunicorn, key
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[tuple[float, str, int, bool]] = []  # (when, call, status, JSON)
        self.decisions: list[str] = []
        self.reports: list[str] = []
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(CLIENTS)]

    def call(self, path: str, body: dict):
        answer = self.gunicorn.http(self.key).post(path, json_body=body, timeout=30)
        try:
            data = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else None
        except ValueError:
            data = None
        with self.lock:
            self.answers.append((time.monotonic(), path, answer.status, data is not None))
        return answer.status, data

    def run(self) -> None:
        while not self.stop.is_set():
            status, decision = self.call("/api/v1/route", ROUTE)
            if status != 200:
                time.sleep(0.05)
                continue
            with self.lock:
                self.decisions.append(decision["decision_id"])
            status, report = self.call("/api/v1/usage", {"decision_id": decision["decision_id"], "input_tokens": 90,
                                                         "output_tokens": 40, "idempotency_key": uuid.uuid4().hex})
            if status in (200, 201):
                with self.lock:
                    self.reports.append(report["usage_id"])

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def warm_up(gunicorn: Gunicorn, key: str) -> None:
    """Calls from several threads at once, so that every worker has verified the key and read the policy."""
    def calls():
        for _ in range(10):
            assert gunicorn.http(key).post("/api/v1/route", json_body=ROUTE).status == 200

    threads = [threading.Thread(target=calls) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)


def drain(env: dict[str, str]) -> int:
    """The worker's drain task, run once; how many rows it wrote."""
    return int(manage(env, "shell", "-c", "from router.tasks import drain_ledger; print(drain_ledger())").strip().splitlines()[-1])


def stored(postgres: PostgresServer, table: str, ids: list[str]) -> int:
    with psycopg.connect(postgres.url, autocommit=True) as connection:
        return connection.execute(f"SELECT count(*) FROM {table} WHERE id = ANY(%s::uuid[])", [ids]).fetchone()[0]


def test_routing_and_usage_go_on_through_a_database_outage_and_nothing_answered_is_lost(stack):
    postgres, gunicorn, keys, env = stack
    service, newcomer = gunicorn.http(keys["service"]), gunicorn.http(keys["newcomer"])
    for key in (keys["service"], keys["revoked-later"]):
        warm_up(gunicorn, key)

    with Load(gunicorn, keys["service"]) as load:
        time.sleep(3)
        postgres.stop()
        down_at = time.monotonic()
        time.sleep(5)
        health = gunicorn.http().get("/api/v1/health")
        audit = service.get("/api/v1/decisions")
        unknown_key = newcomer.post("/api/v1/route", json_body=ROUTE)
        drained_while_down = drain(env)
        time.sleep(OUTAGE_SECONDS - (time.monotonic() - down_at))
        postgres.start()
        up_at = time.monotonic()
        time.sleep(5)

    during = [answer for answer in load.answers if down_at <= answer[0] < up_at]
    figures = (f"{len(load.answers)} answers, {len(during)} during the {up_at - down_at:.0f} s outage "
               f"({sum(1 for a in during if a[2] in (200, 201))} 200/201, statuses {sorted({a[2] for a in load.answers})}); "
               f"{len(load.decisions)} decisions and {len(load.reports)} reports answered")
    print(figures)
    assert all(is_json for *_, is_json in load.answers), figures
    assert len(during) > 100 and all(status in (200, 201) for _, _, status, _ in during), figures

    assert health.status == 200 and health.json()["status"] == "degraded", health
    assert health.json()["database"]["ok"] is False and health.json()["database"]["routing_from_memory"] is True
    for answer in (audit, unknown_key):  # what truly needs the database
        assert answer.status == 503 and answer.json()["error"] == "database_unavailable", answer
        assert answer.headers["retry-after"] == "5"

    # The worker's drain task: nothing written while the database is down, everything once it is back.
    assert drained_while_down == 0
    assert drain(env) >= len(load.decisions) + len(load.reports)
    assert service.get("/api/v1/decisions").status == 200
    assert stored(postgres, "router_decision", load.decisions) == len(load.decisions), figures
    assert stored(postgres, "router_usageevent", load.reports) == len(load.reports), figures
    assert gunicorn.http().get("/api/v1/health").json()["status"] == "ok"

    with psycopg.connect(postgres.url, autocommit=True) as connection:
        connection.execute("UPDATE router_apikey SET revoked = true WHERE name = 'revoked-later'")
    revoked = gunicorn.http(keys["revoked-later"])
    deadline = time.monotonic() + 5
    while (answer := revoked.post("/api/v1/route", json_body=ROUTE)).status == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert answer.status == 401, answer
    time.sleep(1.5)  # the other worker's copy of the key has expired too
    assert {revoked.post("/api/v1/route", json_body=ROUTE).status for _ in range(10)} == {401}


# One worker: the one that verified the key is the one asked.
@pytest.mark.parametrize("stack", [{"ROUTER_DATABASE_DOWN_SECONDS": "4", "workers": "1"}], indirect=True)
def test_routing_from_memory_ends_after_the_bound(stack):
    postgres, gunicorn, keys, _ = stack
    service = gunicorn.http(keys["service"])
    warm_up(gunicorn, keys["service"])

    postgres.stop()
    went_on = [service.post("/api/v1/route", json_body=ROUTE).status for _ in range(5)]
    time.sleep(5)
    refused = service.post("/api/v1/route", json_body=ROUTE)
    health = gunicorn.http().get("/api/v1/health")

    assert went_on == [200] * 5
    assert refused.status == 503 and refused.json()["error"] == "database_unavailable" and refused.headers["retry-after"] == "5", refused
    assert health.status == 503 and health.json()["status"] == "down", health
