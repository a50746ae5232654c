"""Runs in separate processes started by tests: imports nothing from Django until it is set up."""

import os
import time


def decide_many(env: dict, start, count: int, estimate: int, pause: float, results) -> None:
    """Waits at the `start` barrier with the other deciders, then asks for `count` decisions for
    category 'general', `pause` seconds apart; puts on `results` the outcomes ("unavailable" for a 503)
    and when it started and finished deciding."""
    os.environ.update(env)
    import django

    django.setup()
    from router.counters import CountersUnavailable
    from router.decisions import decide
    from router.engine import RouteRequest
    from router.snapshot import current_snapshot

    current_snapshot()  # loaded before the start, so that the deciders start together
    request = RouteRequest(category="general", estimated_input_tokens=estimate)
    outcomes = []
    start.wait(timeout=120)
    started = time.time()
    for _ in range(count):
        try:
            outcomes.append(decide(request, caller=f"process-{os.getpid()}").outcome)
        except CountersUnavailable:
            outcomes.append("unavailable")
        time.sleep(pause)
    results.put({"outcomes": outcomes, "started": started, "finished": time.time()})
