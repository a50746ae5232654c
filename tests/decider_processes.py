"""Deciders in PROCESSES processes of their own (tests.deciders), started together on the counters the settings name."""

import multiprocessing
from collections.abc import Callable

from django.conf import settings
from django.db import connections

from tests.deciders import database_url, decide_many

PROCESSES = 4


def run_deciders(count: int, estimate: int = 0, pause: float = 0.0, once_started: Callable[[], None] = lambda: None,
                 admitted: list[str] | None = None) -> list[str]:
    """PROCESSES processes that ask for `count` decisions each, all starting at one barrier (which this
    process passes too, then calls `once_started`); asserts that they decided at the same time, and
    returns every outcome, and the ids of the decisions that chose a model (`admitted`, when given a list)."""
    env = {
        "DJANGO_SETTINGS_MODULE": "switchboard.settings",
        "DATABASE_URL": database_url(settings),
        "REDIS_URL": settings.REDIS_URL,
        "ROUTER_REDIS_PREFIX": settings.ROUTER_REDIS_PREFIX,
        "ROUTER_REDIS_DOWN": settings.ROUTER_REDIS_DOWN,
        "REDIS_SENTINELS": ",".join(f"{host}:{port}" for host, port in settings.REDIS_SENTINELS),
        "REDIS_SENTINEL_MASTER": settings.REDIS_SENTINEL_MASTER,
        "REDIS_CLUSTER": settings.REDIS_CLUSTER,
        "REDIS_MIN_REPLICAS": str(settings.REDIS_MIN_REPLICAS),
        "REDIS_MIN_REPLICAS_TIMEOUT_MS": str(settings.REDIS_MIN_REPLICAS_TIMEOUT_MS),
    }
    connections.close_all()
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(PROCESSES + 1), context.Queue()
    processes = [context.Process(target=decide_many, args=(env, start, count, estimate, pause, results)) for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    start.wait(timeout=120)
    once_started()
    reports = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert max(report["started"] for report in reports) < min(report["finished"] for report in reports), "the deciders did not overlap"
    if admitted is not None:
        admitted.extend(decision_id for report in reports for decision_id in report["admitted"])
    return [outcome for report in reports for outcome in report["outcomes"]]
