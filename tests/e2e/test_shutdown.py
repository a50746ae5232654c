"""SIGTERM stops everything a deployment started within 15 s: `make run`'s gunicorn master and workers,
Celery worker, its pool and the embedded beat (the signal goes to `make`); in production gunicorn,
the worker and beat, each signalled as a supervisor would."""

import re

import pytest

from tests.e2e.processes import STOP_SECONDS

# At least these processes, by command line, must have been seen running before the stop.
EXPECTED = {
    "quick_start": {r"gunicorn switchboard\.wsgi": 3, r"celery -A switchboard worker --beat": 4},
    "production": {r"gunicorn switchboard\.wsgi": 3, r"celery -A switchboard worker": 2, r"celery -A switchboard beat": 1},
}


@pytest.mark.stops_processes
def test_sigterm_stops_every_process_within_15_seconds(deployment, request):
    result = deployment.stop()

    seen = [proc.cmdline for proc in result.stopped]
    counts = {pattern: sum(1 for cmdline in seen if re.search(pattern, cmdline)) for pattern in EXPECTED[request.node.callspec.params["deployment"]]}
    assert all(counts[p] >= n for p, n in EXPECTED[request.node.callspec.params["deployment"]].items()), (counts, seen)
    assert result.leftovers == [], f"still running {STOP_SECONDS} s after SIGTERM:\n" + "\n".join(
        f"{proc.pid} {proc.cmdline}" for proc in result.leftovers) + "\n" + deployment.logs_tail()
    assert result.seconds <= STOP_SECONDS
