"""Instructions per counted decision and per usage report, counted with valgrind's callgrind.

Timings on a shared VM drift by several per cent from minute to minute; instruction counts repeat to
about 0.1 %, so this is how a change to the hot path is compared with the code before it. The WSGI
app is called in one process against PostgreSQL and Redis loaded with bench/policy.yaml, N times for
each N in CALLS; the instructions of the larger run less those of the smaller, divided by the calls
between them, are what one request costs (startup and imports cancel out).

    .venv/bin/python bench/instructions.py          # prints instructions per decision and per report

Environment: INSTRUCTIONS_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/switchboard_instructions
— dropped and created), INSTRUCTIONS_REDIS_URL (default redis://127.0.0.1:6379/9 — flushed).
"""

import io
import os
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DATABASE_URL = os.environ.get("INSTRUCTIONS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/switchboard_instructions")
REDIS_URL = os.environ.get("INSTRUCTIONS_REDIS_URL", "redis://127.0.0.1:6379/9")
CALLS = (250, 1000)
BODIES = {
    "route": b'{"category": "general", "complexity": "medium", "estimated_input_tokens": 1200, "estimated_output_tokens": 800}',
    "usage": b'{"model": "bench-primary", "input_tokens": 1100, "output_tokens": 750, "status": "ok"}',
}
ENV = {
    **os.environ, "DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL, "DJANGO_DEBUG": "0", "SECURE_SSL_REDIRECT": "0",
    "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50), "ALLOWED_HOSTS": "127.0.0.1",
    "ROUTER_REDIS_PREFIX": "switchboard-instructions:", "LOG_LEVEL": "WARNING", "PYTHONHASHSEED": "0",
}


def call(endpoint: str, count: int, key: str) -> None:
    """Calls POST /api/v1/<endpoint> `count` times through the WSGI app, in this process."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "switchboard.settings")
    from switchboard.wsgi import application as app
    body = BODIES[endpoint]
    statuses: list[str] = []

    def start_response(status: str, headers: list, exc_info=None) -> None:
        statuses.append(status)

    for _ in range(count):
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": f"/api/v1/{endpoint}", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1", "wsgi.url_scheme": "http", "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)), "HTTP_AUTHORIZATION": f"Bearer {key}", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
        }
        b"".join(app(environ, start_response))
        if not statuses[-1].startswith(("200", "201")):
            raise SystemExit(f"{endpoint} answered {statuses[-1]}")


def prepare() -> str:
    """A fresh database and Redis with the bench policy; returns an API key."""
    url = urlparse(DATABASE_URL)
    name = url.path.lstrip("/")
    connect = ["psql", "-q", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres"]
    subprocess.run([*connect, "-d", "postgres", "-c", f"DROP DATABASE IF EXISTS {name}"], check=True)
    subprocess.run([*connect, "-d", "postgres", "-c", f"CREATE DATABASE {name}"], check=True)
    subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], check=True, capture_output=True)
    manage = [PYTHON, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=ROOT, env=ENV, check=True)
    subprocess.run([*manage, "import_policy", str(ROOT / "bench" / "policy.yaml")], cwd=ROOT, env=ENV, check=True, capture_output=True)
    created = subprocess.run([*manage, "create_api_key", "instructions", "--scopes", "route,usage"], cwd=ROOT, env=ENV,
                             check=True, capture_output=True, text=True)
    return created.stdout.strip().splitlines()[-1]


def instructions(endpoint: str, count: int, key: str) -> int:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", PYTHON, __file__, "call", endpoint, str(count), key],
                       cwd=ROOT, env=ENV, check=True, capture_output=True)
        return int(re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M).group(1))


def main() -> None:
    key = prepare()
    low, high = CALLS
    for endpoint in BODIES:
        per_call = (instructions(endpoint, high, key) - instructions(endpoint, low, key)) / (high - low)
        print(f"{endpoint}: {per_call:,.0f} instructions per request")


if __name__ == "__main__":
    if sys.argv[1:2] == ["call"]:
        call(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
