import os
import uuid

import pytest
from django.conf import settings

# The real browser's fixtures (`browser`, `page`) for the page tests.
pytest_plugins = ["tests.browser"]


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


def _own_keys(client, settings):
    """This test's keys under their own prefix, removed afterwards."""
    settings.ROUTER_REDIS_PREFIX = f"switchboard-test-{uuid.uuid4().hex[:12]}:"
    yield client
    keys = list(client.scan_iter(settings.ROUTER_REDIS_PREFIX + "*"))
    for key in keys:  # one by one: a cluster's keys are in several slots
        client.delete(key)


@pytest.fixture(scope="session")
def sentinel_servers(tmp_path_factory):
    """A primary, its replica and three Sentinels, shared by the tests that count through Sentinel (none stops them)."""
    from tests.redis_servers import SentinelGroup

    group = SentinelGroup(tmp_path_factory.mktemp("sentinel")).start()
    yield group
    group.kill()


@pytest.fixture(scope="session")
def cluster_servers(tmp_path_factory):
    """A cluster of three primaries with a replica each, shared by the tests that count on a cluster (none stops it)."""
    from tests.redis_servers import ClusterServers

    cluster = ClusterServers(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.kill()


@pytest.fixture
def redis_on_sentinel(sentinel_servers, settings):
    """The counters find their primary through Sentinel; a client of that primary."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # its host is never used: Sentinel names the primary
    settings.REDIS_SENTINELS, settings.REDIS_SENTINEL_MASTER = sentinel_servers.addresses, sentinel_servers.master
    yield from _own_keys(sentinel_servers.primary_client(), settings)


@pytest.fixture
def redis_on_cluster(cluster_servers, settings):
    """The counters on a Redis Cluster (found out from the server); a cluster client."""
    settings.REDIS_URL = cluster_servers.url
    yield from _own_keys(cluster_servers.client(), settings)


@pytest.fixture
def general_with_requests_quota(db):
    """A route for the category "general" to gpt-4o, whose provider has a quota of 1,000 requests a minute."""
    from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route

    provider = ProviderFactory(slug="openai", kind="openai")
    model = LLMModelFactory(key="gpt-4o", provider=provider)
    QuotaFactory(provider=provider, name="requests-minute", metric="requests", window="minute", limit=1000, soft_limit_ratio=1,
                 models=[model])
    make_route("general", [model])


@pytest.fixture(params=["standalone", "sentinel", "cluster"])
def any_redis(request):
    """Runs the test on REDIS_URL's Redis, on a primary found through Sentinel and on a Redis Cluster; a client of it."""
    return request.getfixturevalue({"standalone": "redis_client", "sentinel": "redis_on_sentinel", "cluster": "redis_on_cluster"}[request.param])


@pytest.fixture
def postgres_only():
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        _required_in_ci("PostgreSQL (DATABASE_URL)")


@pytest.fixture(autouse=True)
def fresh_process_state():
    """Each test starts like a new process: no cached policy, keys, installation id or Redis outage."""
    from router import counters
    from router.auth import forget_cached_keys
    from router.snapshot import forget_snapshot

    forget_snapshot()
    forget_cached_keys()
    counters.forget_installation()
    counters.outage.end()
    yield
    forget_snapshot()


@pytest.fixture(params=["database", "redis"])
def counters(request, settings):
    """Runs the test once on database counters and once on Redis counters."""
    if request.param == "database":
        settings.REDIS_URL = ""
    else:
        request.getfixturevalue("redis_client")
    return request.param


@pytest.fixture
def api(db):
    """An API client holding a key with every scope."""
    from rest_framework.test import APIClient

    from tests.factories import make_api_key

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key()}")
    return client


@pytest.fixture(autouse=True)
def own_redis_keys(request, settings):
    """With REDIS_URL set, every test keeps its Redis keys under its own prefix, removed afterwards."""
    if settings.REDIS_URL:
        request.getfixturevalue("redis_client")


@pytest.fixture(autouse=True)
def private_provider_stand_ins(settings):
    """The provider stand-ins listen on 127.0.0.1 over plain HTTP, as a local gateway does (providers.egress)."""
    settings.PROVIDER_ALLOW_PRIVATE_BASE_URLS = True


@pytest.fixture(autouse=True)
def plain_static_storage(settings):
    """Pages render without `collectstatic` (production uses whitenoise's manifest storage)."""
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}


@pytest.fixture
def viewer(client, db):
    """A staff user of the 'policy viewers' group, logged in on `client`."""
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user("viewer", is_staff=True)
    user.groups.add(Group.objects.get(name="policy viewers"))
    client.force_login(user)
    return user
