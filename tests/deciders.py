"""Runs in separate processes started by tests: imports nothing from Django until it is set up."""

import os
import time


def decide_many(env: dict, start_at: float, count: int, estimate: int) -> list[str]:
    """Waits for the common start, then asks for `count` decisions for category 'general'."""
    os.environ.update(env)
    import django

    django.setup()
    from router.decisions import decide
    from router.engine import RouteRequest

    while time.time() < start_at:
        time.sleep(0.001)
    request = RouteRequest(category="general", estimated_input_tokens=estimate)
    return [decide(request, caller=f"process-{os.getpid()}").outcome for _ in range(count)]
