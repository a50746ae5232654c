"""/metrics adds up the counters of every gunicorn worker (PROMETHEUS_MULTIPROC_DIR): once both workers
have answered decisions, every scrape, whichever worker answers it, counts every decision made."""

import re
import shutil
import tempfile
from pathlib import Path

from tests.e2e.processes import Deployment, decisions_count, process_tree, route

DECISIONS = re.compile(r"^switchboard_decisions_total\{[^}]*\}\s+(\S+)$", re.M)
MAX_DECISIONS = 300


def scraped_decisions(deployment: Deployment) -> float:
    answer = deployment.http().get("/metrics")
    assert answer.status == 200, answer
    return sum(float(value) for value in DECISIONS.findall(answer.text))


def decisions_per_process(metrics_dir: Path) -> dict[int, float]:
    """The decisions each process counted, read from its own file of the multiprocess directory."""
    from prometheus_client import CollectorRegistry, multiprocess

    counted = {}
    for path in metrics_dir.glob("counter_*.db"):
        with tempfile.TemporaryDirectory() as single:
            shutil.copy(path, single)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=single)
            counted[int(path.stem.split("_")[1])] = sum(
                sample.value for metric in registry.collect() for sample in metric.samples
                if sample.name == "switchboard_decisions_total"
            )
    return counted


def gunicorn_workers(deployment: Deployment) -> set[int]:
    procs = process_tree([service.pid for service in deployment.services], [service.pid for service in deployment.services])
    gunicorn = {proc.pid: proc for proc in procs if "gunicorn" in proc.cmdline}
    return {pid for pid, proc in gunicorn.items() if proc.ppid in gunicorn}


def test_every_scrape_counts_the_decisions_of_both_workers(deployment):
    key = deployment.key("route,usage,read")
    workers = gunicorn_workers(deployment)
    assert len(workers) == 2, f"expected gunicorn's two workers, found {workers}"
    before = scraped_decisions(deployment)

    made = 0
    while made < MAX_DECISIONS:
        answer = route(deployment, key)
        assert answer.status == 200, answer
        made += 1
        if made % 5 == 0 and all(decisions_per_process(deployment.metrics_dir).get(pid, 0) > 0 for pid in workers):
            break
    per_process = decisions_per_process(deployment.metrics_dir)
    assert all(per_process.get(pid, 0) > 0 for pid in workers), f"after {made} decisions only some workers answered: {per_process}"

    scrapes = [scraped_decisions(deployment) for _ in range(10)]
    assert scrapes == [before + made] * 10
    assert scrapes[0] == sum(per_process.values()) == decisions_count(deployment)
