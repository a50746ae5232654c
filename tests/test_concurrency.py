"""Many deciders in several processes admit exactly what a quota has room for, never more."""

import multiprocessing
import time

import pytest
from django.conf import settings
from django.db import connections

from router.counters import flush_ledger
from router.models import Decision
from tests.deciders import decide_many
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route

PROCESSES = 4
DECISIONS_PER_PROCESS = 15


def _run_processes(estimate: int) -> list[str]:
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        database_url = f"sqlite:///{database['NAME']}"
    else:
        database_url = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    env = {
        "DJANGO_SETTINGS_MODULE": "switchboard.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.REDIS_URL,
        "ROUTER_REDIS_PREFIX": settings.ROUTER_REDIS_PREFIX,
    }
    connections.close_all()
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3
    with context.Pool(PROCESSES) as pool:
        results = pool.starmap(decide_many, [(env, start_at, DECISIONS_PER_PROCESS, estimate)] * PROCESSES)
    return [outcome for outcomes in results for outcome in outcomes]


@pytest.fixture
def one_model_route(settings):
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") and settings.DATABASES["default"]["NAME"].startswith("file:"):
        pytest.skip("an in-memory SQLite database cannot be shared between processes")
    provider = ProviderFactory(slug="bedrock", kind="bedrock", region="us-east-1")
    model = LLMModelFactory(key="bedrock-sonnet-4-5", provider=provider)
    make_route("general", [model], "any")
    return provider, model


@pytest.mark.django_db(transaction=True)
def test_it_admits_exactly_the_requests_a_quota_has_room_for(one_model_route, counters):
    provider, model = one_model_route
    QuotaFactory(provider=provider, metric="requests", window="minute", limit=25, soft_limit_ratio=1, models=[model])

    outcomes = _run_processes(estimate=0)

    assert outcomes.count("primary") == 25
    assert outcomes.count("exhausted") == PROCESSES * DECISIONS_PER_PROCESS - 25
    flush_ledger()
    assert Decision.objects.filter(outcome="primary").count() == 25


@pytest.mark.django_db(transaction=True)
def test_it_admits_exactly_the_tokens_a_quota_has_room_for(one_model_route, counters):
    provider, model = one_model_route
    QuotaFactory(provider=provider, metric="tokens", window="minute", limit=1000, soft_limit_ratio=1, models=[model])

    outcomes = _run_processes(estimate=90)

    assert outcomes.count("primary") == 11  # 11 x 90 = 990; a twelfth would make 1080
    flush_ledger()
    assert sum(Decision.objects.filter(outcome="primary").values_list("input_tokens", flat=True)) == 990
