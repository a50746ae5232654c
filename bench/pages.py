"""The dashboard's pages over the bench's history: the overview at each preset range and the busiest quota's page
over 7 days, each rendered RENDERS times in this process through Django's test client, logged in, after a
warm-up; prints each page's queries, median and fastest render, and the CPU time a render takes in this process
and in its PostgreSQL backend (read from /proc: the database must run on this machine). On a machine shared with
other work the wall time includes waiting for a core; the CPU time is what the render costs, and on an idle
machine the wall time comes close to it (the render waits on one or the other, never both).

Run by bench/run.py with its environment (the bench database and Redis), after the history is stored.
"""

import os
import statistics
import sys
import time
from pathlib import Path

RENDERS = int(os.environ.get("BENCH_PAGE_RENDERS", "15"))


def busiest_quota() -> tuple[int, str]:
    """The quota the most fallbacks and refusals of the last 7 days were turned away by (the newest the Now panel
    reads of each outcome); the fullest quota when none was."""
    from datetime import timedelta

    from django.utils import timezone

    from dashboard import selectors

    now = timezone.now()
    reasons, _ = selectors.top_reasons(now - timedelta(days=7), now)
    named = next((reason for reason in reasons if reason.quota_id is not None), None)
    if named:
        return named.quota_id, named.subject
    bar = max(selectors.quota_bars(), key=lambda bar: bar.ratio)
    return bar.id, bar.quota.label


def backend_cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) the PostgreSQL backend `pid` has used, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "switchboard.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    user, _ = User.objects.get_or_create(username="bench-viewer", defaults={"is_staff": True, "is_superuser": True})
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    quota_id, quota_label = busiest_quota()
    client.get("/")  # the process's first request loads the policy snapshot: counted in no page
    pages = [(f"overview, {label}", f"/?range={key}") for key, label in (("1h", "last hour"), ("6h", "last 6 h"),
                                                                         ("24h", "last 24 h"), ("7d", "last 7 days"))]
    pages.append((f"quota page, {quota_label}, last 7 days", f"/quotas/{quota_id}/?range=7d"))
    pages.append((f"quota page, {quota_label}, last 24 h", f"/quotas/{quota_id}/?range=24h"))
    for label, url in pages:
        with CaptureQueriesContext(connection) as queries:  # the warm-up; the timed renders record no queries
            client.get(url)
        queries = len(queries)  # now: each request clears the connection's log of them
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        times = []
        cpu_started, backend_started = time.process_time(), backend_cpu_seconds(backend)
        for _ in range(RENDERS):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                print(f"PAGE {label}: answered {response.status_code}", flush=True)
                break
        else:
            python = (time.process_time() - cpu_started) * 1000 / RENDERS
            database = (backend_cpu_seconds(backend) - backend_started) * 1000 / RENDERS
            print(f"PAGE {label} ({url}): {queries} queries, median {statistics.median(times):.0f} ms"
                  f" (fastest {min(times):.0f} ms) over {RENDERS} renders; CPU a render {python + database:.0f} ms"
                  f" ({python:.0f} Python, {database:.0f} PostgreSQL)", flush=True)


if __name__ == "__main__":
    main()
