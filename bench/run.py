"""`make bench`: routing decisions and usage reports under gunicorn on PostgreSQL and Redis, driven by wrk.

Prints requests/s, p50 and p99 for counted decisions and usage reports, the same for a bare WSGI app
under the same gunicorn settings (the floor of the stack) and the ratio; then stores 10 million usage
events and 1 million decisions and measures decisions again, the dashboard's pages (bench/pages.py: the
overview at each range, the busiest quota's page over 7 days), the quota tuning over 7 days, and decisions
while `prune_ledger` drops most of that history.
What a decision and a usage report cost in CPU of the web workers and of Redis, and the rows a second one
drain writes into PostgreSQL, are printed for the capacity model (docs/operations.md, "Scaling"). The same CPU
figures and requests/s are then measured with the counters on a Sentinel deployment (a primary, its replica and
three Sentinels) and on a Redis Cluster (three primaries, a replica each), both started from redis-server on free
ports in a temporary directory (bench/redis_modes.py) and stopped after, and printed beside the standalone Redis's.
On the cluster Redis's CPU is summed over the primaries, though one does the work: every key of one installation
carries one hash tag. Without redis-server (or redis-cli, for the cluster) those runs are skipped, saying so.
Counted decisions on the database counters (no Redis) are measured too, before and after the history,
as are the provider workloads (bench/providers.py) and what the client library adds to a call
(bench/client_overhead.py, on a database and Redis DB of its own).

Both apps are served at once and their runs alternate, round after round (BENCH_ROUNDS): a shared
machine's speed drifts from minute to minute, and a ratio taken from runs minutes apart measures
that drift as much as the app. Each figure printed is the median over the rounds.

`bench/run.py --pages` (`make bench-pages`) stores the history alone and measures the pages and the tuning over
it, with no wrk runs; `--pages --keep` measures a bench database that already holds the history again.

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/switchboard_bench — the
database is dropped and created), BENCH_REDIS_URL (default redis://127.0.0.1:6379/2 — flushed),
BENCH_BROKER_URL (Celery's broker for the worker that writes the ledger to the database, default
redis://127.0.0.1:6379/3 — flushed), BENCH_WORKERS (gunicorn workers, default 2), BENCH_DURATION
(per run, default 10s), BENCH_ROUNDS (default 3), BENCH_PORT (Switchboard's, default 8765; the bare app's is
the next), BENCH_PAGE_RENDERS (renders of each page, default 15), BENCH_HISTORY (usage events to store for the
history run, default 10000000; 0 skips it), BENCH_REDIS_MODES (the Redis deployments whose capacity figures are
measured, of standalone,sentinel,cluster — the default, all three; the other runs use the standalone Redis and
BENCH_BROKER_URL whatever it says).
"""

import contextlib
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import providers, redis_modes  # noqa: E402 (the project root is on the path from here)

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/switchboard_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/3")
WORKERS = os.environ.get("BENCH_WORKERS", "2")
WORKER_CLASS = os.environ.get("BENCH_WORKER_CLASS", "sync")
THREADS = os.environ.get("BENCH_THREADS", "1")
DURATION = os.environ.get("BENCH_DURATION", "10s")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
HISTORY_EVENTS = int(os.environ.get("BENCH_HISTORY", "10000000"))
HISTORY_DECISIONS = HISTORY_EVENTS // 10
HISTORY_DAYS = 60
PORT = int(os.environ.get("BENCH_PORT", "8765"))
REDIS_MODES = [mode.strip() for mode in os.environ.get("BENCH_REDIS_MODES", ",".join(redis_modes.MODES)).split(",") if mode.strip()]
BARE_PORT = PORT + 1

ENV = {
    **os.environ,
    "DATABASE_URL": DATABASE_URL,
    "REDIS_URL": REDIS_URL,
    "CELERY_BROKER_URL": BROKER_URL,
    "DJANGO_DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "SECURE_SSL_REDIRECT": "0",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "ROUTER_REDIS_PREFIX": "switchboard-bench:",
    "LOG_LEVEL": "WARNING",
}
DECISION_BODY = '{"category": "general", "complexity": "medium", "estimated_input_tokens": 1200, "estimated_output_tokens": 800}'
USAGE_BODY = '{"model": "bench-primary", "input_tokens": 1100, "output_tokens": 750, "status": "ok"}'


def run(*args: str, env: dict | None = None, capture: bool = False) -> str:
    result = subprocess.run(args, cwd=ROOT, env=env or ENV, check=True, text=True, capture_output=capture)
    return result.stdout if capture else ""


def psql(sql: str, database: str | None = None) -> None:
    url = urlparse(DATABASE_URL)
    run("psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432),
        "-U", url.username or "postgres", "-d", database or "postgres", "-c", sql)


def prepare() -> str:
    """A fresh database and Redis with the bench policy; returns an API key."""
    name = urlparse(DATABASE_URL).path.lstrip("/")
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{name}"')
    redis.Redis.from_url(REDIS_URL).flushdb()
    redis.Redis.from_url(BROKER_URL).flushdb()
    python = str(BIN / "python")
    run(python, "manage.py", "migrate", "--no-input", "-v", "0")
    run(python, "manage.py", "import_policy", "bench/policy.yaml")
    run(python, "manage.py", "collectstatic", "--no-input", "-v", "0")
    return run(python, "manage.py", "create_api_key", "bench", "--scopes", "route,usage,read", capture=True).strip().splitlines()[-1]


class Server:
    """gunicorn with the same settings for Switchboard and the bare app."""

    def __init__(self, app: str, env: dict, port: int) -> None:
        self.app, self.env, self.port = app, env, port

    def __enter__(self) -> "Server":
        self.process = subprocess.Popen(
            [str(BIN / "gunicorn"), self.app, "--bind", f"127.0.0.1:{self.port}", "--workers", WORKERS,
             "--worker-class", WORKER_CLASS, "--threads", THREADS, "--log-level", "warning", "--backlog", "2048"],
            cwd=ROOT, env=self.env,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/health", timeout=1)
                return self
            except urllib.error.HTTPError:
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.app} did not start")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]


class Drainer:
    """The Celery worker with beat that writes the ledger from Redis to PostgreSQL every second, as in production."""

    def __init__(self, env: dict | None = None) -> None:
        self.env = env or ENV

    def __enter__(self) -> "Drainer":
        self.schedule = tempfile.TemporaryDirectory()
        self.process = subprocess.Popen(
            [str(BIN / "celery"), "-A", "switchboard", "worker", "--beat", "--concurrency", "1", "--loglevel", "WARNING",
             "--schedule", str(Path(self.schedule.name) / "beat")],
            # Celery warns about running as root, which the bench machine does.
            cwd=ROOT, env=self.env | {"PYTHONWARNINGS": "ignore::UserWarning"}, stdout=subprocess.DEVNULL,
        )
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.schedule.cleanup()


def ledger_backlog(primaries: list[redis.Redis]) -> int:
    """Rows waiting in the primaries' ledger streams, each named after its installation: <prefix>{sb:<installation>}:ledger."""
    return sum(client.xlen(key) for client in primaries for key in client.scan_iter(ENV["ROUTER_REDIS_PREFIX"] + "*:ledger"))


def redis_cpu(primaries: list[redis.Redis]) -> tuple[float, float]:
    """The primaries' CPU seconds so far (user + system, INFO cpu) and their commands' time (INFO commandstats), in
    seconds, summed over them."""
    cpu = commands = 0.0
    for client in primaries:
        info = client.info("cpu")
        cpu += info["used_cpu_user"] + info["used_cpu_sys"]
        commands += sum(stats["usec"] for stats in client.info("commandstats").values()) / 1e6
    return cpu, commands


def process_cpu(pids: list[int]) -> float:
    """CPU seconds the processes used so far (user + system)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


class CpuPerRequest:
    """What one request costs in CPU: of the web workers (gunicorn's children), of the Redis primaries, of their commands."""

    def __init__(self, server: "Server", primaries: list[redis.Redis]) -> None:
        self.server, self.primaries = server, primaries

    def __enter__(self) -> "CpuPerRequest":
        self.workers = self.server.workers()
        self.web, (self.redis, self.commands) = process_cpu(self.workers), redis_cpu(self.primaries)
        return self

    def __exit__(self, *exc) -> None:
        self.web, (redis_seconds, command_seconds) = process_cpu(self.workers) - self.web, redis_cpu(self.primaries)
        self.redis, self.commands = redis_seconds - self.redis, command_seconds - self.commands

    def per_request(self, requests: int) -> dict[str, float]:
        """Microseconds of CPU per request: web workers, Redis, Redis's commands."""
        return {"web": self.web / requests * 1e6, "redis": self.redis / requests * 1e6, "commands": self.commands / requests * 1e6}

    def report(self, label: str, requests: int) -> str:
        cost = self.per_request(requests)
        return (f"{label}: {requests} requests; per request, web workers {cost['web']:.0f} us CPU"
                f" ({requests / self.web:.0f} requests per web core-second), Redis {cost['redis']:.0f} us CPU"
                f" of which its commands {cost['commands']:.0f} us")


def wait_for_ledger(primaries: list[redis.Redis]) -> tuple[int, float]:
    """Rows still in Redis when the load stopped, and how long the drainer took to write them."""
    waiting, started = ledger_backlog(primaries), time.time()
    while ledger_backlog(primaries) and time.time() - started < 60:
        time.sleep(0.1)
    return waiting, time.time() - started


def wrk(url: str, connections: int, key: str = "", body: str | None = None, duration: str = DURATION) -> dict:
    args = ["wrk", "-t", "2", "-c", str(connections), "-d", duration, "--latency", url]
    env = dict(ENV)
    if body is not None:
        args[1:1] = ["-s", str(ROOT / "bench" / "post.lua")]
        env |= {"BENCH_BODY": body, "BENCH_KEY": key}
    output = run(*args, env=env, capture=True)

    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    def milliseconds(value: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
        return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
        "p50": latency("50"), "p99": latency("99"),
        "max": milliseconds(re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", output, re.M).group(1)),
        "errors": int(errors.group(1)) if errors else 0,
    }


class Target:
    """One endpoint under load: its URL, and the key and body posted to it (none for the bare app)."""

    def __init__(self, label: str, url: str, key: str = "", body: str | None = None) -> None:
        self.label, self.url, self.key, self.body = label, url, key, body
        self.runs: dict[int, list[dict]] = {32: [], 4: []}

    def run(self, connections: int) -> None:
        self.runs[connections].append(wrk(self.url, connections, self.key, self.body))

    def median(self, connections: int, figure: str) -> float:
        return statistics.median(run[figure] for run in self.runs[connections])

    def errors(self) -> int:
        return sum(run["errors"] for runs in self.runs.values() for run in runs)

    def report(self) -> None:
        print(f"{self.label:<34} {self.median(32, 'rps'):>9.0f} req/s at 32 conns (p50 {self.median(32, 'p50'):.2f} ms,"
              f" p99 {self.median(32, 'p99'):.2f} ms) | 4 conns: {self.median(4, 'rps'):>6.0f} req/s,"
              f" p50 {self.median(4, 'p50'):.2f} ms, p99 {self.median(4, 'p99'):.2f} ms"
              f"{'  NON-2XX: ' + str(self.errors()) if self.errors() else ''}", flush=True)


def measure(targets: list[Target], bare: Target) -> dict[str, float]:
    """Serve Switchboard, the bare app and the drain worker, and alternate the targets' runs with the bare
    app's, round after round; returns each target's median ratio to it."""
    ratios: dict[str, list[float]] = {target.label: [] for target in targets}
    with tempfile.TemporaryDirectory() as metrics_dir, Drainer():
        with Server("switchboard.wsgi", ENV | {"PROMETHEUS_MULTIPROC_DIR": metrics_dir}, PORT), Server("bench.bare_wsgi", ENV, BARE_PORT):
            for target in [*targets, bare]:
                wrk(target.url, 8, target.key, target.body, "3s")  # warm up every worker's policy snapshot and connections
            for _ in range(ROUNDS):
                for target in targets:
                    target.run(32)
                    bare.run(32)
                    ratios[target.label].append(target.runs[32][-1]["rps"] / bare.runs[32][-1]["rps"])
                for target in [*targets, bare]:
                    target.run(4)
        waiting, seconds = wait_for_ledger([redis.Redis.from_url(REDIS_URL)])
    for target in [*targets, bare]:
        target.report()
    print(f"ledger: {waiting} rows were still in Redis when the load stopped; written to PostgreSQL {seconds:.1f} s later",
          flush=True)
    return {label: statistics.median(values) for label, values in ratios.items()}


DRAIN_SCRIPT = (
    "import time\n"
    "from router.counters import redis_counters\n"
    "started = time.perf_counter()\n"
    "rows = redis_counters().drain()\n"
    "print('DRAINED', rows, time.perf_counter() - started)\n"
)


def capacity_on(deployment: redis_modes.Deployment, targets: list[Target]) -> dict[str, dict[str, float]]:
    """What a decision and a usage report cost with the counters on `deployment`: the CPU of the web workers and of
    the Redis primaries (INFO cpu; INFO commandstats, their commands alone) during a run at 32 connections with the
    drain worker writing the ledger, as in production. Per target: microseconds per request (web, redis, commands)
    and the run's requests/s."""
    env = ENV | deployment.env
    figures = {}
    with tempfile.TemporaryDirectory() as metrics_dir, Drainer(env):
        with Server("switchboard.wsgi", env | {"PROMETHEUS_MULTIPROC_DIR": metrics_dir}, PORT) as server:
            for target in targets:
                wrk(target.url, 8, target.key, target.body, "3s")
                with CpuPerRequest(server, deployment.primaries) as cpu:
                    load = wrk(target.url, 32, target.key, target.body)
                print(cpu.report(f"capacity on {deployment.label} Redis, {target.label}", load["requests"])
                      + (f"  NON-2XX: {load['errors']}" if load["errors"] else ""), flush=True)
                figures[target.label] = cpu.per_request(load["requests"]) | {"rps": load["rps"]}
        wait_for_ledger(deployment.primaries)
    return figures


def measure_capacity(targets: list[Target]) -> dict[str, dict[str, float]]:
    """For the capacity model (docs/operations.md, "Scaling"): what a decision and a usage report cost on the standalone
    Redis (capacity_on); then how many rows a second one drain writes into PostgreSQL, from a backlog made by a run
    without the drain worker."""
    with redis_modes.deployment("standalone", REDIS_URL) as standalone:
        figures = capacity_on(standalone, targets)
    with tempfile.TemporaryDirectory() as metrics_dir:
        with Server("switchboard.wsgi", ENV | {"PROMETHEUS_MULTIPROC_DIR": metrics_dir}, PORT):
            for target in targets:
                wrk(target.url, 32, target.key, target.body)
                output = run(str(BIN / "python"), "manage.py", "shell", "-c", DRAIN_SCRIPT, capture=True)
                rows, seconds = re.search(r"DRAINED (\d+) ([\d.]+)", output).groups()
                print(f"drain into PostgreSQL, {target.label}: {int(rows)} rows in {float(seconds):.1f} s,"
                      f" {int(rows) / float(seconds):.0f} rows/s", flush=True)
    return figures


def use_redis(env: dict) -> None:
    """Move the bench's counters onto another Redis: rebuilt there from the ledger, and the previous Redis's
    data-loss mark (router.counters.marks) forgotten, since a drain would report its absence from the new one as a
    loss."""
    psql("DELETE FROM providers_redismark", database=urlparse(DATABASE_URL).path.lstrip("/"))
    run(str(BIN / "python"), "manage.py", "rebuild_counters", env=env, capture=True)


Figures = dict[str, dict[str, float]]  # per target: capacity_on's figures


def measure_redis_modes(targets: list[Target], standalone: Figures | None) -> None:
    """The capacity figures on a Sentinel deployment and on a cluster as BENCH_REDIS_MODES asks, each started for the
    bench and stopped after, then every deployment's side by side, the standalone Redis's (`standalone`) first."""
    capacity: dict[str, Figures] = {}
    descriptions: dict[str, str] = {}
    if standalone:
        with redis_modes.deployment("standalone", REDIS_URL) as deployment:
            capacity[deployment.label], descriptions[deployment.label] = standalone, deployment.describe()
    for mode in [mode for mode in REDIS_MODES if mode != "standalone"]:
        missing = redis_modes.missing_programs(mode)
        if missing:
            print(f"capacity on {redis_modes.LABELS[mode]} Redis: skipped, {' and '.join(missing)} not found"
                  " (Debian's redis-server package has both)", flush=True)
            continue
        with redis_modes.deployment(mode, REDIS_URL) as deployment:
            use_redis(ENV | deployment.env)
            capacity[deployment.label], descriptions[deployment.label] = capacity_on(deployment, targets), deployment.describe()
        use_redis(ENV)
    if capacity:
        print_capacity(capacity, descriptions)


def print_capacity(capacity: dict[str, Figures], descriptions: dict[str, str]) -> None:
    """Each Redis deployment's capacity figures in a column of its own."""
    labels = list(capacity)
    rows = []
    for target in capacity[labels[0]]:
        name = target.split(" (")[0]
        figures = [capacity[label][target] for label in labels]
        rows += [(f"{name}: web workers' CPU", [f"{each['web']:.0f} us" for each in figures]),
                 (f"{name}: Redis CPU (its commands)", [f"{each['redis']:.0f} us ({each['commands']:.0f} us)" for each in figures]),
                 (f"{name}: at 32 connections", [f"{each['rps']:.0f} req/s" for each in figures])]
    print("capacity per request on each Redis deployment (on a cluster, Redis CPU is summed over its primaries; one"
          " installation's keys carry one hash tag, so one primary does the work):", flush=True)
    for label in labels:
        print(f"  {label}: {descriptions[label]}")
    width = max(len(name) for name, _ in rows)
    print(f"  {'':<{width}}" + "".join(f"{label:>18}" for label in labels))
    for name, cells in rows:
        print(f"  {name:<{width}}" + "".join(f"{cell:>18}" for cell in cells), flush=True)


def create_history_partitions(days: int) -> None:
    """The ledger's partitions for the history's days, as a ledger that has run that long holds them."""
    script = ("from datetime import timedelta\nfrom django.utils import timezone\nfrom router.partitions import create_ahead\n"
              f"create_ahead(now=timezone.now() - timedelta(days={days}), days={days})\n")
    run(str(BIN / "python"), "manage.py", "shell", "-c", script)


def measure_database_counters(target: Target) -> None:
    """Counted decisions on the database counters: a deployment without Redis, or ROUTER_REDIS_DOWN=db
    while Redis is down. One run at each load, with no drain worker: each decision is written before
    its answer. Run when no other load has written the ledger for a minute: the current minute and a
    rolling minute are summed from the ledger's rows, so a minute of Redis-speed traffic slows it."""
    with tempfile.TemporaryDirectory() as metrics_dir:
        with Server("switchboard.wsgi", ENV | {"REDIS_URL": "", "PROMETHEUS_MULTIPROC_DIR": metrics_dir}, PORT):
            wrk(target.url, 4, target.key, target.body, "3s")
            target.run(32)
            target.run(4)
    target.report()


def measure_pruning(target: Target) -> None:
    """Counted decisions while `prune_ledger` drops the history older than 8 days (about 9.5 million of its
    rows, in its days' partitions): decisions/s during the pruning against just before, and the longest any
    decision waited. The command prints the longest drop of one partition."""
    with tempfile.TemporaryDirectory() as metrics_dir, Drainer():
        with Server("switchboard.wsgi", ENV | {"PROMETHEUS_MULTIPROC_DIR": metrics_dir}, PORT):
            wrk(target.url, 8, target.key, target.body, "3s")
            before = wrk(target.url, 32, target.key, target.body)
            started = time.time()
            pruner = subprocess.Popen([str(BIN / "python"), "manage.py", "prune_ledger", "--primary-days", "8", "--audit-days", "8"],
                                      cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
            during = []
            while pruner.poll() is None:
                during.append(wrk(target.url, 32, target.key, target.body, "5s"))
            seconds = time.time() - started
    rps = statistics.mean(run["rps"] for run in during)
    print(f"prune_ledger: {pruner.stdout.read().strip()} Took {seconds:.0f} s.", flush=True)
    print(f"decisions during pruning: {rps:.0f} req/s against {before['rps']:.0f} just before ({rps / before['rps']:.2f});"
          f" longest wait {max(run['max'] for run in during):.0f} ms (before: {before['max']:.0f} ms);"
          f" p99 {statistics.median(run['p99'] for run in during):.1f} ms (before: {before['p99']:.1f} ms)", flush=True)


def tuning_seconds(key: str) -> float:
    """GET /api/v1/quotas/tuning?days=7 over the stored history: the median of three answers."""
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}/api/v1/quotas/tuning?days=7", headers={"Authorization": f"Bearer {key}"})
    times = []
    with Server("switchboard.wsgi", ENV, PORT):
        for _ in range(3):
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=120) as response:
                response.read()
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def store_history() -> float:
    """10 million usage events and 1 million decisions over the last 60 days, as PostgreSQL can write them; one
    decision in ten a fallback, its primary turned away at the soft limit of the requests quota (as the tuning reads)."""
    name = urlparse(DATABASE_URL).path.lstrip("/")
    started = time.time()
    psql(f"""
        INSERT INTO router_usageevent (id, created_at, caller, model_key, provider_slug, input_tokens, output_tokens, cost_usd,
                                       status, ratelimit_headers, cache_read_input_tokens, cache_write_input_tokens,
                                       counted_tokens, counted_input_tokens, counted_output_tokens, answered_instead)
        SELECT gen_random_uuid(), now() - interval '1 hour' - (i * interval '518 milliseconds'), 'history', 'bench-primary', 'bench', 1000, 500,
               0.0105, 'ok', '{{}}', 0, 0, 1500, 1000, 500, false
        FROM generate_series(1, {HISTORY_EVENTS}) AS i;
        INSERT INTO router_decision (id, created_at, caller, category, complexity, tier, outcome, model_key, provider_slug,
                                     primary_key, reason, trace, policy_version, input_tokens, output_tokens, cost_usd, reported,
                                     cache_read_input_tokens, cache_write_input_tokens, counted_tokens, counted_input_tokens,
                                     counted_output_tokens, answered_by)
        SELECT gen_random_uuid(), now() - interval '1 hour' - (i * interval '5184 milliseconds'), 'history', 'general', 'medium', '',
               CASE WHEN i % 10 = 0 THEN 'fallback' ELSE 'primary' END,
               CASE WHEN i % 10 = 0 THEN 'bench-fallback' ELSE 'bench-primary' END, 'bench', 'bench-primary', 'history',
               CASE WHEN i % 10 = 0 THEN jsonb_build_array(
                   jsonb_build_object('model', 'bench-primary', 'verdict', 'skipped', 'reason', 'quota', 'quotas', jsonb_build_array(
                       jsonb_build_object('quota', 'bench requests-minute', 'quota_id', quota.id, 'metric', 'requests', 'window', 'minute',
                                          'reset', 'rolling', 'used', 900000000 + i % 1000, 'estimate', 1, 'soft_limit', 900000000,
                                          'limit', 1000000000, 'frees_at', null))),
                   jsonb_build_object('model', 'bench-fallback', 'verdict', 'chosen', 'reason', 'within limits'))
               ELSE '[{{"model": "bench-primary", "verdict": "chosen", "reason": "within limits"}}]'::jsonb END,
               1, 1000, 500, 0.0105, true,
               0, 0, 1500, 1000, 500, ''
        FROM generate_series(1, {HISTORY_DECISIONS}) AS i, (SELECT id FROM providers_quota WHERE name = 'requests-minute') AS quota;
        ANALYZE;
    """, database=name)
    return time.time() - started


def page_timings() -> None:
    """The dashboard's overview at each range and the busiest quota's page over 7 days (bench/pages.py)."""
    print(run(str(BIN / "python"), "bench/pages.py", capture=True), end="", flush=True)


def store_and_rebuild() -> None:
    create_history_partitions(HISTORY_DAYS + 1)
    seconds = store_history()
    print(f"stored {HISTORY_EVENTS:,} usage events and {HISTORY_DECISIONS:,} decisions in {seconds:.0f} s", flush=True)
    started = time.time()
    run(str(BIN / "python"), "manage.py", "rebuild_counters")
    print(f"rebuild_counters from that ledger: {time.time() - started:.1f} s", flush=True)


def pages_only() -> None:
    """`bench/run.py --pages`: the history alone, then the dashboard's pages and the tuning over it; no wrk runs.
    With `--keep`, a bench database that already holds the history is migrated, its Redis counters rebuilt, and
    measured again as it is."""
    if "--keep" in sys.argv[1:]:
        run(str(BIN / "python"), "manage.py", "migrate", "--no-input", "-v", "0")
        run(str(BIN / "python"), "manage.py", "collectstatic", "--no-input", "-v", "0")
        run(str(BIN / "python"), "manage.py", "rebuild_counters")
        key = run(str(BIN / "python"), "manage.py", "create_api_key", "bench-pages", "--scopes", "read", capture=True).strip().splitlines()[-1]
    else:
        key = prepare()
        store_and_rebuild()
    print(f"Machine: {os.cpu_count()} cores; PostgreSQL and Redis on localhost", flush=True)
    page_timings()
    print(f"quota tuning over 7 days of that history (GET /api/v1/quotas/tuning, median of 3): {tuning_seconds(key):.2f} s",
          flush=True)


def main() -> None:
    if "--pages" in sys.argv[1:]:
        pages_only()
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    if unknown := set(REDIS_MODES) - set(redis_modes.MODES):
        sys.exit(f"BENCH_REDIS_MODES: unknown {', '.join(sorted(unknown))}; choose from {', '.join(redis_modes.MODES)}")
    key = prepare()
    print(f"Machine: {os.cpu_count()} cores; gunicorn {WORKERS} {WORKER_CLASS} workers x {THREADS} threads; wrk -t2, {DURATION} per run,"
          f" {ROUNDS} rounds; PostgreSQL and Redis on localhost", flush=True)
    switchboard = f"http://127.0.0.1:{PORT}"
    decisions = Target("counted decisions (POST /route)", f"{switchboard}/api/v1/route", key, DECISION_BODY)
    usage = Target("usage reports (POST /usage)", f"{switchboard}/api/v1/usage", key, USAGE_BODY)
    bare = Target("bare WSGI app (fixed JSON)", f"http://127.0.0.1:{BARE_PORT}/")
    measure_database_counters(Target("decisions, database counters", decisions.url, key, DECISION_BODY))
    ratios = measure([decisions, usage], bare)
    print(f"ratio to the bare WSGI app at 32 connections (median of the rounds' ratios): decisions {ratios[decisions.label]:.2f},"
          f" usage reports {ratios[usage.label]:.2f}", flush=True)
    standalone = measure_capacity([decisions, usage]) if "standalone" in REDIS_MODES else None
    measure_redis_modes([decisions, usage], standalone)
    with Drainer(), Server("switchboard.wsgi", ENV, PORT):
        providers.report(switchboard, key)
    # What the client library adds to a call (route + report), against the provider stand-ins.
    print(run(str(BIN / "python"), "bench/client_overhead.py", "-n", "200", env=dict(os.environ), capture=True), end="", flush=True)

    if HISTORY_EVENTS:
        store_and_rebuild()
        measure_database_counters(Target("decisions, database counters, history", decisions.url, key, DECISION_BODY))
        after = Target("counted decisions with history", decisions.url, key, DECISION_BODY)
        bare_after = Target("bare WSGI app (fixed JSON)", bare.url)
        ratio_after = measure([after], bare_after)[after.label]
        print(f"decisions with history / without: {after.median(32, 'rps') / decisions.median(32, 'rps'):.2f}"
              f" (as ratios to the bare app, which the machine's drift does not move: {ratio_after / ratios[decisions.label]:.2f})",
              flush=True)
        page_timings()
        print(f"quota tuning over 7 days of that history (GET /api/v1/quotas/tuning, median of 3): {tuning_seconds(key):.2f} s",
              flush=True)
        measure_pruning(Target("counted decisions while pruning", decisions.url, key, DECISION_BODY))


if __name__ == "__main__":
    main()
