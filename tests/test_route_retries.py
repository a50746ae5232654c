"""Safe retries: a routing request sent again with the same request_id (after a timeout, say) answers the same
decision, counted once; the same id with another body is refused with 409."""

import multiprocessing

import pytest
from django.db import connections
from rest_framework.test import APIClient

from router.counters import flush_ledger, redis_counters
from router.models import Decision
from router.snapshot import forget_snapshot
from tests.calls import post, quotas_used, route
from tests.conftest import _required_in_ci
from tests.deciders import COPIES, database_url, post_copy
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_api_key, make_route


@pytest.fixture
def policy(db):
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai)
    QuotaFactory(provider=openai, name="requests", metric="requests", window="minute", limit=2, soft_limit_ratio=1, models=[gpt4o])
    make_route("general", [gpt4o])
    make_route(CategoryFactory(slug="critical", fallback="never"), [gpt4o])


def test_a_repeat_answers_the_same_decision_counted_once(api, counters, policy):
    first = route(api, category="general", estimated_input_tokens=100, request_id="task-7/try-1")
    again = route(api, category="general", estimated_input_tokens=100, request_id="task-7/try-1")

    assert again == first
    assert quotas_used(api)["requests"] == 1
    flush_ledger()
    assert [str(stored) for stored in Decision.objects.values_list("id", flat=True)] == [first["decision_id"]]


def test_a_repeated_refusal_answers_the_same_refusal_stored_once(api, counters, policy):
    route(api, category="critical")
    route(api, category="critical")
    refused = post(api, "/api/v1/route", category="critical", request_id="r-1")
    again = post(api, "/api/v1/route", category="critical", request_id="r-1")

    assert refused.status_code == again.status_code == 429
    assert again.json()["decision_id"] == refused.json()["decision_id"]
    flush_ledger()
    assert Decision.objects.filter(outcome="failed_fast").count() == 1


def test_other_request_ids_and_other_keys_make_decisions_of_their_own(api, counters, policy):
    other_service = APIClient()
    other_service.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key('other-service')}")

    first = route(api, category="general", request_id="same")
    second = route(api, category="general", request_id="other")
    third = route(other_service, category="general", request_id="same", expect=429)

    assert len({first["decision_id"], second["decision_id"], third["decision_id"]}) == 3


def test_another_body_under_the_same_request_id_is_refused_409(api, counters, policy):
    first = route(api, category="general", estimated_input_tokens=100, request_id="task-8")

    conflict = post(api, "/api/v1/route", category="general", estimated_input_tokens=200, request_id="task-8")

    assert conflict.status_code == 409
    assert conflict.json()["error"] == "request_id_reused"
    assert "task-8" in conflict.json()["detail"]
    assert route(api, category="general", estimated_input_tokens=100, request_id="task-8") == first
    assert quotas_used(api)["requests"] == 1


def test_an_error_answer_is_not_remembered_and_a_retry_decides_afresh(api, counters, policy):
    unknown = post(api, "/api/v1/route", category="later", request_id="task-9")
    assert unknown.status_code == 400
    make_route("later", [LLMModelFactory(key="gpt-4o-mini", provider=ProviderFactory(slug="openai-2", kind="openai"))])
    forget_snapshot()  # as every process does within ROUTER_POLICY_RECHECK_SECONDS

    answer = route(api, category="later", request_id="task-9")

    assert answer["model"]["key"] == "gpt-4o-mini"


def test_a_request_without_request_id_leaves_nothing_in_the_memory(api, policy, redis_client):
    route(api, category="general")
    route(api, category="general")

    assert not list(redis_client.scan_iter(f"{redis_counters().prefix}request:*"))
    assert quotas_used(api)["requests"] == 2


def test_a_dry_run_ignores_the_request_id(api, counters, policy):
    first = route(api, category="general", dry_run=True, request_id="d-1")
    route(api, category="general", request_id="d-1")

    assert first["decision_id"] is None
    assert quotas_used(api)["requests"] == 1


@pytest.mark.parametrize("request_id", ["", "   ", "x" * 201, "bell\x07", "nul\x00", 12])
def test_a_request_id_that_is_not_short_printable_text_is_refused(api, policy, request_id):
    response = post(api, "/api/v1/route", category="general", request_id=request_id)

    assert response.status_code == 400
    assert "request_id" in response.json()["fields"]


@pytest.mark.django_db(transaction=True)
def test_copies_of_one_request_arriving_together_make_one_decision(counters, settings):
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") and settings.DATABASES["default"]["NAME"].startswith("file:"):
        _required_in_ci("a database that processes can share (an in-memory SQLite database cannot be; set DATABASE_URL)")
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai)
    QuotaFactory(provider=openai, name="requests", metric="requests", window="minute", limit=10, soft_limit_ratio=1, models=[gpt4o])
    make_route("general", [gpt4o])
    raw_key = make_api_key()
    env = {"DJANGO_SETTINGS_MODULE": "switchboard.settings", "DATABASE_URL": database_url(settings), "REDIS_URL": settings.REDIS_URL,
           "ROUTER_REDIS_PREFIX": settings.ROUTER_REDIS_PREFIX}
    connections.close_all()
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(COPIES), context.Queue()
    copies = [context.Process(target=post_copy, args=(env, start, raw_key, "/api/v1/route", {"category": "general", "request_id": "burst-1"},
                                            results))
              for _ in range(COPIES)]
    for copy in copies:
        copy.start()
    answers = [results.get(timeout=120) for _ in copies]
    for copy in copies:
        copy.join(timeout=30)

    assert {status for status, _ in answers} == {200}
    assert len({body["decision_id"] for _, body in answers}) == 1
    flush_ledger()
    assert Decision.objects.count() == 1
