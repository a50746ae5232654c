"""The README suite: Switchboard as a newcomer meets it, real processes and the docs' commands as written.

What it starts, once per session each (session-scoped fixtures):

- `quick_start`: README "Quick start": `make run` (the block's text, run as written) with `PORT` set to a
  free port, in a clean copy of the checkout, on the embedded default (SQLite, database counters,
  Celery's filesystem broker). The admin user and password are read from what it prints.
- `production`: docs/operations.md "Running in production": the block's `export` with the test's own
  values for the names it sets (a PostgreSQL database created for this run and dropped after it, Redis
  db 12 with a key prefix of its own for the counters, another Redis db, claimed for this run, as the
  broker, a generated SECRET_KEY and SECRETS_ENCRYPTION_KEY, ALLOWED_HOSTS=127.0.0.1, a temporary PROMETHEUS_MULTIPROC_DIR), plus
  SECURE_SSL_REDIRECT=0 so that plain-HTTP requests are answered, then the block's commands in order:
  the one-shot commands (migrate, collectstatic, import_policy) in one shell, and gunicorn, the Celery
  worker and beat each in a shell of its own (`exec <the line>`, as a supervisor runs them, so that the
  SIGTERM reaches the process itself). Only in CI or when DATABASE_URL and REDIS_URL are set: outside
  CI it skips without them, under CI=true it fails (tests.conftest._required_in_ci).
- `deployment`: each test that takes it runs once against each of the two.
- `proxy`: deploy/nginx.conf served by Debian's nginx (ports, upstream port and a self-signed certificate
  replaced, processes.Nginx) in front of the production deployment's gunicorn.

How the docs' commands run. Every fenced block is read from README.md and docs/operations.md when the
suite starts, so the suite follows the docs. A block runs in a new `bash -c` started by `env -i` with
only PATH, HOME (a temporary directory), LANG and what its section says to set (production: the
`export` line is run first), in the copy's root, with `127.0.0.1:8000`-style addresses given the test's
port (the README's documented `PORT`) and nothing else changed. The `curl` first on PATH records the
HTTP status of each call (processes.CurlRecorder) and is otherwise curl.

The clean copy (processes.clean_copy): `git ls-files` copied from the working tree, so uncommitted edits
are tested; `.venv` is a real directory of symlinks to the repository's venv entries with its own
`.installed` stamps, newer than the copied requirements files, so `make run` neither reinstalls nor
writes into /work/main/.venv.

Stopping: the tests marked `stops_processes` send SIGTERM (to `make` for the quick start; to gunicorn's
master, the worker and beat for production) and assert that every process seen (walked through /proc:
each service's tree and its session) is gone within 15 s. They run last among their deployment's tests
(pytest_collection_modifyitems below). Whatever is still running at the end of the session is killed
(only processes this suite started).
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import _required_in_ci
from tests.e2e.processes import (
    OPERATIONS,
    README,
    REDIS_COUNTERS_DB,
    REPO,
    STARTUP_SECONDS,
    Block,
    CurlRecorder,
    Deployment,
    Nginx,
    RedisKeys,
    block_in,
    clean_copy,
    fenced_blocks,
    free_port,
    printed_admin,
    shell_lines,
    wait_until,
    wait_until_serving,
    with_port,
)

# Redis databases of this suite (the machine's Redis is shared): counters in processes.REDIS_COUNTERS_DB, with
# a key prefix per run; the broker in one claimed for the run (Celery's keys cannot be prefixed from the environment).
REDIS_BROKER_DBS = (13, 14, 11, 10)
BROKER_CLAIM = "switchboard-e2e:claimed-by"


def pytest_configure(config):
    config.addinivalue_line("markers", "stops_processes: sends SIGTERM to a deployment; runs after its other tests")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Tests that stop a deployment run right after the last other test of the same deployment (after
    pytest has grouped the tests by the session-scoped `deployment` parameter)."""

    def deployment_of(item):
        callspec = getattr(item, "callspec", None)
        if callspec and "deployment" in callspec.params:
            return callspec.params["deployment"]
        return next((name for name in ("quick_start", "production") if name in getattr(item, "fixturenames", ())), None)

    stoppers = [item for item in items if item.get_closest_marker("stops_processes") and deployment_of(item)]
    for item in stoppers:
        items.remove(item)
    for item in stoppers:
        same = [index for index, other in enumerate(items) if deployment_of(other) == deployment_of(item)]
        items.insert(same[-1] + 1 if same else len(items), item)


# --- The docs ----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def readme_blocks() -> list[Block]:
    return fenced_blocks(README)


@pytest.fixture(scope="session")
def operations_blocks() -> list[Block]:
    return fenced_blocks(OPERATIONS)


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def curl(e2e_dir) -> CurlRecorder:
    return CurlRecorder(e2e_dir / "curl")


@pytest.fixture(scope="session")
def quick_start(e2e_dir, readme_blocks, curl) -> Deployment:
    """README "Quick start": `make run` as written, PORT set, in a clean copy; stopped at the end of the session."""
    block = block_in(readme_blocks, "Quick start", text="make run")
    root = clean_copy(REPO, e2e_dir / "quick-start")
    deployment = Deployment("quick start", root, free_port(), curl, database="sqlite", redis=False,
                            metrics_dir=root / "var" / "metrics")
    try:
        make = deployment.start("make run", block.text.strip(), extra_env={"PORT": str(deployment.port)})
        deployment.signalled.append(make)
        # `bash -c 'make run'` execs make: the SIGTERM of the stop test goes to make itself.
        wait_until(lambda: Path(f"/proc/{make.pid}/cmdline").read_bytes().startswith(b"make"), 10, "make run started")
        make.wait_for_log(rf"^Switchboard is running at http://127\.0\.0\.1:{deployment.port}/", STARTUP_SECONDS)
        wait_until_serving(deployment)
        make.wait_for_log(r"celery@\S+ ready\.", 60)
        deployment.admin_user, deployment.admin_password = printed_admin(make.log())
        deployment.snapshot()
        yield deployment
    finally:
        deployment.kill_leftovers()


# --- Production: PostgreSQL, Redis, a Redis broker -----------------------------------------------------

@pytest.fixture(scope="session")
def postgres_database():
    """A PostgreSQL database of this run on the server DATABASE_URL names; dropped afterwards."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        _required_in_ci("PostgreSQL for the production mode (DATABASE_URL)")
    import psycopg

    parsed = urllib.parse.urlsplit(url)
    admin_url = urllib.parse.urlunsplit(parsed._replace(path="/postgres"))
    name = f"switchboard_e2e_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    problem = None
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        problem = f"PostgreSQL at {parsed.hostname}:{parsed.port} ({exc.__class__.__name__})"
    if problem:
        _required_in_ci(problem)
    try:
        yield urllib.parse.urlunsplit(parsed._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_server():
    """The Redis REDIS_URL names: returns the URL of one of its databases."""
    url = os.environ.get("REDIS_URL", "")
    if not url:
        _required_in_ci("Redis for the production mode and runserver (REDIS_URL)")
    import redis

    problem = None
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        problem = f"Redis at {url} ({exc.__class__.__name__})"
    if problem:
        _required_in_ci(problem)

    def database(number: int) -> str:
        return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path=f"/{number}"))

    return database


def claim_broker_database(redis_server) -> tuple[str, Callable[[], None]]:
    """A Redis database for Celery's broker keys, claimed for this run (a key with a deadline), and how
    to give it back: Celery's own keys and the claim are removed."""
    import redis

    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    for number in REDIS_BROKER_DBS:
        url = redis_server(number)
        client = redis.Redis.from_url(url)
        if client.set(BROKER_CLAIM, token, nx=True, ex=1800):
            def release(client=client):
                keys = [k for pattern in ("_kombu.*", "celery*", "unacked*") for k in client.scan_iter(pattern)]
                if keys:
                    client.delete(*keys)
                if client.get(BROKER_CLAIM) == token.encode():
                    client.delete(BROKER_CLAIM)
            return url, release
    pytest.fail(f"every Redis database this suite may use for a broker ({REDIS_BROKER_DBS}) is claimed by another run")


# The names the production block may set, with this suite's values for them (the `values` below).
PRODUCTION_SETTINGS = {"DJANGO_DEBUG", "SECRET_KEY", "SECRETS_ENCRYPTION_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL",
                       "PROMETHEUS_MULTIPROC_DIR", "SECURE_PROXY_SSL_HEADER_ENABLED"}
SERVER_COMMAND = re.compile(r"(^|/)gunicorn\s|(^|/)celery\s.*\s(worker|beat)(\s|$)|manage\.py\s+runserver")


@pytest.fixture(scope="session")
def production(e2e_dir, operations_blocks, curl, postgres_database, redis_server) -> Deployment:
    """docs/operations.md "Running in production" in a clean copy, with the test's own database, Redis and broker."""
    block = block_in(operations_blocks, "Running in production")
    export, *commands = shell_lines(block.text)
    assert export.startswith("export "), f"{block}: expected the block to start with its `export` of the environment"
    names = [assignment.split("=", 1)[0] for assignment in shlex.split(export)[1:]]
    unknown = sorted(set(names) - PRODUCTION_SETTINGS)
    assert not unknown, f"{block} sets {unknown}: tell the e2e suite (tests/e2e/conftest.py) what a test run sets them to"
    servers = [command for command in commands if SERVER_COMMAND.search(command)]
    one_shots = [command for command in commands if command not in servers]
    assert commands == one_shots + servers, f"{block}: expected the one-shot commands first, then the long-running ones"

    root = clean_copy(REPO, e2e_dir / "production")
    # The block imports `policy.yaml`, the operator's policy file kept in git: a clean checkout has none,
    # so this run's is the example policy.
    (root / "policy.yaml").write_bytes((root / "policy.example.yaml").read_bytes())
    metrics_dir = e2e_dir / "production-metrics"
    metrics_dir.mkdir()
    counters = RedisKeys(redis_server(REDIS_COUNTERS_DB), f"switchboard-e2e-{uuid.uuid4().hex[:10]}:")
    broker_url, release_broker = claim_broker_database(redis_server)
    values = {
        "DJANGO_DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SECRETS_ENCRYPTION_KEY": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": postgres_database,
        "REDIS_URL": counters.url,
        "CELERY_BROKER_URL": broker_url,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "SECURE_PROXY_SSL_HEADER_ENABLED": "1",
    }
    prelude = "export " + " ".join(f"{name}={shlex.quote(values[name])}" for name in names) + "\n"
    deployment = Deployment("production", root, free_port(), curl, prelude=prelude, database="postgresql", redis=True,
                            metrics_dir=metrics_dir, manifest_static=True,
                            # Plain HTTP for the test's requests (a real deployment has TLS in front); the
                            # counters' keys under this run's prefix.
                            extra_env={"SECURE_SSL_REDIRECT": "0", "ROUTER_REDIS_PREFIX": counters.prefix})
    try:
        result = deployment.shell("set -e\n" + "\n".join(with_port(command, deployment.port) for command in one_shots), timeout=300)
        assert result.returncode == 0, f"{block}: the setup commands failed:\n{result.stdout}\n{result.stderr}"
        # The block's `bootstrap` made the admin user and printed its password.
        deployment.admin_user, deployment.admin_password = printed_admin(result.stdout)
        for command in servers:
            service = deployment.start(command.split("#")[0].strip(), "exec " + with_port(command, deployment.port))
            deployment.signalled.append(service)
        wait_until_serving(deployment)
        worker = next(s for s in deployment.services if re.search(r"celery\s.*\sworker", s.name))
        worker.wait_for_log(r"celery@\S+ ready\.", 60)
        deployment.snapshot()
        yield deployment
    finally:
        deployment.kill_leftovers()
        counters.remove()
        release_broker()


@pytest.fixture(scope="session", params=["quick_start", "production"])
def deployment(request) -> Deployment:
    """Each of the two ways the docs run Switchboard, started once per session."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def proxy(e2e_dir, production) -> Nginx:
    """deploy/nginx.conf (Debian's nginx) in front of the production deployment's gunicorn."""
    if not shutil.which("nginx"):
        _required_in_ci("nginx (Debian's package, which .ci/run installs)")
    nginx = Nginx(e2e_dir / "nginx", production.port).start()
    try:
        yield nginx
    finally:
        nginx.stop()
