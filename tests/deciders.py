"""Runs in separate processes started by tests: imports nothing from Django until it is set up."""

import os
import time

COPIES = 4


def database_url(settings) -> str:
    """The test database's URL, for the processes a test starts."""
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{database['NAME']}"
    return f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"


def decide_many(env: dict, start, count: int, estimate: int, pause: float, results) -> None:
    """Waits at the `start` barrier with the other deciders, then asks for `count` decisions for
    category 'general', `pause` seconds apart; puts on `results` the outcomes ("unavailable" for a 503), the ids
    of the decisions that chose a model, and when it started and finished deciding."""
    os.environ.update(env)
    import django

    django.setup()
    from router.counters import CountersUnavailable
    from router.counters.redis import ReplicasBehind
    from router.decisions import decide
    from router.engine import RouteRequest
    from router.snapshot import current_snapshot

    current_snapshot()  # loaded before the start, so that the deciders start together
    request = RouteRequest(category="general", estimated_input_tokens=estimate)
    outcomes, admitted = [], []
    start.wait(timeout=120)
    started = time.time()
    for _ in range(count):
        try:
            decision = decide(request, caller=f"process-{os.getpid()}")
        except (CountersUnavailable, ReplicasBehind):
            outcomes.append("unavailable")
        else:
            outcomes.append(decision.outcome)
            if not decision.refused:
                admitted.append(str(decision.id))
        time.sleep(pause)
    results.put({"outcomes": outcomes, "admitted": admitted, "started": started, "finished": time.time()})


def post_copy(env: dict, start, raw_key: str, path: str, body: dict, results) -> None:
    """Waits at the `start` barrier with the other copies, then POSTs `body` to `path` as a service retrying it
    would; puts on `results` the status and body of the answer."""
    os.environ.update(env)
    import django

    django.setup()
    from django.test.utils import setup_test_environment
    from rest_framework.test import APIClient

    from router.snapshot import current_snapshot

    setup_test_environment()
    current_snapshot()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    start.wait(timeout=120)
    response = client.post(path, body, format="json")
    results.put((response.status_code, response.json()))
