import os
import uuid

import pytest
from django.conf import settings


def _required_in_ci(what: str) -> None:
    """Outside CI a missing service skips the test; in CI it fails it."""
    message = f"{what} is not configured or not reachable"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run against the real service)")
    pytest.skip(message)


@pytest.fixture
def redis_client(settings):
    """A real Redis (REDIS_URL), with this test's keys under their own prefix and removed afterwards."""
    import redis

    if not settings.REDIS_URL:
        _required_in_ci("REDIS_URL")
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        _required_in_ci(f"Redis at {settings.REDIS_URL}")
    settings.ROUTER_REDIS_PREFIX = f"switchboard-test-{uuid.uuid4().hex[:12]}:"
    yield client
    keys = list(client.scan_iter(settings.ROUTER_REDIS_PREFIX + "*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def postgres_only():
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        _required_in_ci("PostgreSQL (DATABASE_URL)")
