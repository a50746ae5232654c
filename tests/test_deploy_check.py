"""`manage.py check --deploy` is clean with production settings."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.redis_servers import RedisServer

ROOT = Path(__file__).resolve().parent.parent


def check_deploy(tmp_path, redis_url: str, secrets_key: bool = True) -> subprocess.CompletedProcess:
    env = {
        key: value for key, value in os.environ.items()
        if key not in {"SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "DJANGO_DEBUG", "SECRETS_ENCRYPTION_KEY"}
    }
    env |= {"DJANGO_DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), "REDIS_URL": redis_url,
            "ALLOWED_HOSTS": "switchboard.example.com", "SWITCHBOARD_VAR_DIR": str(tmp_path),
            "SWITCHBOARD_ENV_FILE": str(tmp_path / "no.env")}
    if secrets_key:
        env["SECRETS_ENCRYPTION_KEY"] = secrets.token_urlsafe(32)
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.fixture
def redis_server(tmp_path, request):
    server = RedisServer(tmp_path, *request.param).start()
    yield server
    server.kill()


@pytest.mark.parametrize("redis_server", [("--appendonly", "yes")], indirect=True)
def test_it_passes_the_deployment_checklist_with_production_settings(tmp_path, redis_server):
    result = check_deploy(tmp_path, redis_server.url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("redis_server", [("--appendonly", "no")], indirect=True)
def test_it_warns_when_redis_would_lose_what_it_holds_on_a_restart(tmp_path, redis_server):
    result = check_deploy(tmp_path, redis_server.url)

    assert result.returncode != 0
    assert "router.W001" in result.stderr and "appendonly yes" in result.stderr


@pytest.mark.parametrize("redis_server", [("--appendonly", "yes")], indirect=True)
def test_it_warns_when_the_key_of_stored_provider_secrets_is_derived_from_the_secret_key(tmp_path, redis_server):
    result = check_deploy(tmp_path, redis_server.url, secrets_key=False)

    assert result.returncode != 0
    assert "providers.W001" in result.stderr and "SECRETS_ENCRYPTION_KEY is not set" in result.stderr


@pytest.mark.parametrize("debug", ["0", "1"])
def test_it_refuses_to_start_without_a_secret_key(tmp_path, debug):
    env = {key: value for key, value in os.environ.items() if key != "SECRET_KEY"}
    env |= {"DJANGO_DEBUG": debug, "SWITCHBOARD_VAR_DIR": str(tmp_path), "SWITCHBOARD_ENV_FILE": str(tmp_path / "no.env")}

    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_a_command_reads_the_secret_key_make_run_wrote_to_the_env_file(tmp_path):
    (tmp_path / ".env").write_text(f"SECRET_KEY={secrets.token_urlsafe(50)}\n")
    env = {key: value for key, value in os.environ.items() if key not in {"SECRET_KEY", "DJANGO_DEBUG"}}
    env |= {"SWITCHBOARD_VAR_DIR": str(tmp_path), "SWITCHBOARD_ENV_FILE": str(tmp_path / ".env")}

    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
