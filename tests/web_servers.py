"""Switchboard as production runs it, for tests that stop what it depends on: gunicorn and manage.py in processes of
their own, with the environment a test gives them (its own PostgreSQL and Redis)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.processes import Http, free_port, wait_for_url

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
# What the processes take from the test's own environment: nothing that names a database, Redis or broker.
PASSED_ON = ("PATH", "HOME", "LANG", "SECRET_KEY", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE")


def production_env(directory: Path, **settings: str) -> dict[str, str]:
    """DJANGO_DEBUG=0 and `settings`, files under `directory`, no .env read."""
    env = {name: os.environ[name] for name in PASSED_ON if name in os.environ}
    return env | {"DJANGO_DEBUG": "0", "SWITCHBOARD_VAR_DIR": str(directory / "var"), "SWITCHBOARD_ENV_FILE": str(directory / "no.env"),
                  "CELERY_BROKER_URL": "memory://", **settings}


def manage(env: dict[str, str], *args: str) -> str:
    """manage.py with `args`; its standard output."""
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


class Gunicorn:
    """gunicorn switchboard.wsgi on a free port of 127.0.0.1, its output in `log`."""

    def __init__(self, env: dict[str, str], log: Path, workers: int = 2) -> None:
        self.port = free_port()
        self.env, self.log_path, self.workers = env, log, workers
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def http(self, key: str | None = None) -> Http:
        return Http(self.base_url, bearer=key)

    def start(self) -> "Gunicorn":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(GUNICORN), "switchboard.wsgi", "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers)],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_url(self.base_url, "/api/v1/health", 60, alive=self.check_alive)
        return self

    def check_alive(self) -> None:
        if self.process and self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {self.process.returncode}:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
