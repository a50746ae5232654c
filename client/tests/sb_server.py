"""Serving a real Switchboard for the client's tests and benchmark: a temporary data directory (SQLite, database
counters, no Redis), `migrate` + `import_policy` + `create_api_key` in one process, then
`manage.py runserver --noreload` (or gunicorn) on a free port, waited for on /api/v1/health."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2

# The Switchboard checkout to serve: this repository, or another one named by SWITCHBOARD_SERVER_DIR.
REPO = Path(os.environ.get("SWITCHBOARD_SERVER_DIR") or Path(__file__).resolve().parents[2])

SETUP = """
import io, json, sys
import django
django.setup()
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
call_command("import_policy", sys.argv[1])
keys = {}
for name, scopes in (("client-tests", "route,usage,read,admin"), ("no-read", "route,usage")):
    out = io.StringIO()
    call_command("create_api_key", name, scopes=scopes, stdout=out, stderr=io.StringIO())
    keys[name] = out.getvalue().strip().splitlines()[-1]
print(json.dumps({"keys": keys}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a Switchboard process on its own data directory: SQLite, database counters, no Redis."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")}
    env.update({"SWITCHBOARD_VAR_DIR": str(var_dir), "DJANGO_DEBUG": "1", "SECRET_KEY": secrets.token_urlsafe(50),
                "SWITCHBOARD_ENV_FILE": str(var_dir / "none.env"), "DJANGO_SETTINGS_MODULE": "switchboard.settings",
                "SECURE_SSL_REDIRECT": "0", "ALLOWED_HOSTS": "127.0.0.1,localhost", "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
                # The policies name the provider stand-ins on 127.0.0.1, as a local gateway.
                "PROVIDER_ALLOW_PRIVATE_BASE_URLS": "1", **extra})
    return env


def prepare(env: dict[str, str], policy: Path) -> dict[str, Any]:
    """Migrates, imports `policy`, creates the keys: {"keys": {name: key}}."""
    setup = subprocess.run([sys.executable, "-c", SETUP, str(policy)],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    if setup.returncode != 0:
        raise RuntimeError(f"Switchboard setup failed:\n{setup.stdout}\n{setup.stderr}")
    return json.loads(setup.stdout.strip().splitlines()[-1])


class Server:
    """A Switchboard served from the repository on its own data directory, until `stop()`."""

    def __init__(self, var_dir: Path, env: dict[str, str], gunicorn: bool = False) -> None:
        self.var_dir = var_dir
        self.env = env
        self.gunicorn = gunicorn
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = var_dir / f"server-{self.port}.log"

    def start(self) -> Server:
        address = f"127.0.0.1:{self.port}"
        command = ([str(Path(sys.executable).parent / "gunicorn"), "switchboard.wsgi", "--bind", address, "--workers", "2",
                    "--worker-class", "gthread", "--threads", "4", "--log-level", "warning"]
                   if self.gunicorn else [sys.executable, "manage.py", "runserver", "--noreload", address])
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                httpx2.get(self.url + "/api/v1/health", timeout=1)
                return self
            except httpx2.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Switchboard did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
