"""POST /api/v1/usage: recording what a call used, idempotently, and counting it against quotas."""

import multiprocessing
import uuid
from decimal import Decimal

import pytest
from django.db import connections

from providers.models import LLMModel
from router.counters import flush_ledger
from router.models import Decision, UsageEvent
from switchboard.vocabulary import ProviderKind
from tests.calls import quotas_used, report, route, stored_reports
from tests.conftest import _required_in_ci
from tests.deciders import COPIES, database_url, post_copy
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_api_key, make_route


@pytest.fixture
def openai(db):
    return ProviderFactory(slug="openai", kind=ProviderKind.OPENAI)


@pytest.fixture
def gpt4o(openai):
    return LLMModelFactory(key="gpt-4o", provider=openai, model_id="gpt-4o", input_cost_per_mtok=Decimal("2.5"),
                           output_cost_per_mtok=Decimal("10"))


@pytest.fixture
def mini(openai):
    return LLMModelFactory(key="gpt-4o-mini", provider=openai, model_id="gpt-4o-mini")


@pytest.fixture
def quotas(openai):
    QuotaFactory(provider=openai, name="requests", metric="requests", window="day", limit=Decimal(1000))
    QuotaFactory(provider=openai, name="tokens", metric="tokens", window="day", limit=Decimal(1_000_000))
    QuotaFactory(provider=openai, name="output", metric="output_tokens", window="day", limit=Decimal(1_000_000))
    QuotaFactory(provider=openai, name="dollars", metric="cost_usd", window="day", limit=Decimal(100))


def test_it_records_a_report_and_answers_201_with_the_event(api, gpt4o):
    body = report(api, model="gpt-4o", input_tokens=1000, output_tokens=500, status="ok")

    flush_ledger()
    event = UsageEvent.objects.get()
    assert body["usage_id"] == str(event.id)
    assert (body["model"]["key"], body["model"]["provider"], body["input_tokens"], body["output_tokens"], body["status"]) == (
        "gpt-4o", "openai", 1000, 500, "ok")
    assert body["decision_id"] is None
    assert event.caller == "test-service"


def test_it_computes_the_cost_from_the_model_prices(api, gpt4o):
    body = report(api, model="gpt-4o", input_tokens=1000, output_tokens=500)

    # 1,000 x $2.50 + 500 x $10 per million tokens
    assert Decimal(body["cost_usd"]) == Decimal("0.0075")
    flush_ledger()
    assert UsageEvent.objects.get().cost_usd == Decimal("0.0075")


def test_a_report_without_a_decision_counts_one_request_and_its_tokens(api, counters, gpt4o, quotas):
    report(api, model="gpt-4o", input_tokens=1000, output_tokens=500)

    assert quotas_used(api) == {"requests": 1, "tokens": 1500, "output": 500, "dollars": 0.0075}


def test_the_same_idempotency_key_answers_200_with_the_same_body_and_counts_once(api, counters, gpt4o, quotas):
    first = report(api, model="gpt-4o", input_tokens=1000, output_tokens=500, idempotency_key="call-42")
    again = report(api, expect=200, model="gpt-4o", input_tokens=1000, output_tokens=500, idempotency_key="call-42")

    assert again == first
    flush_ledger()
    assert UsageEvent.objects.count() == 1
    assert quotas_used(api) == {"requests": 1, "tokens": 1500, "output": 500, "dollars": 0.0075}


def test_a_different_report_under_a_used_idempotency_key_is_refused_409_naming_the_first(api, counters, gpt4o, quotas):
    make_route("general", [gpt4o])
    first_decision, second_decision = (route(api, category="general")["decision_id"] for _ in range(2))
    first = report(api, decision_id=first_decision, input_tokens=1000, output_tokens=500, idempotency_key="smoke-1")

    body = report(api, expect=409, decision_id=second_decision, input_tokens=999, output_tokens=888, idempotency_key="smoke-1")

    assert (body["error"], body["usage_id"]) == ("idempotency_key_reused", first["usage_id"])
    assert "input_tokens, output_tokens, decision_id" in body["detail"] and first_decision in body["detail"]
    flush_ledger()
    assert UsageEvent.objects.count() == 1
    assert not Decision.objects.get(pk=second_decision).reported


def test_a_report_naming_the_decision_replaces_the_estimate_with_the_actual_tokens(api, counters, gpt4o, quotas):
    make_route("general", [gpt4o])
    decision = route(api, category="general", estimated_input_tokens=1000, estimated_output_tokens=1000)
    assert quotas_used(api) == {"requests": 1, "tokens": 2000, "output": 1000, "dollars": 0.0125}

    body = report(api, decision_id=decision["decision_id"], model="gpt-4o", input_tokens=300, output_tokens=200)

    assert body["decision_id"] == decision["decision_id"]
    assert quotas_used(api) == {"requests": 1, "tokens": 500, "output": 200, "dollars": 0.00275}
    flush_ledger()
    stored = Decision.objects.get(pk=decision["decision_id"])
    assert (stored.input_tokens, stored.output_tokens, stored.reported) == (300, 200, True)


def test_the_model_may_be_left_out_when_the_decision_is_named(api, counters, gpt4o, quotas):
    make_route("general", [gpt4o])
    decision = route(api, category="general", estimated_input_tokens=100)

    body = report(api, decision_id=decision["decision_id"], input_tokens=40, output_tokens=10)

    assert body["model"] == {"key": "gpt-4o", "provider": "openai"}
    assert quotas_used(api)["tokens"] == 50


def test_an_unknown_decision_is_refused_with_404(api, gpt4o):
    body = report(api, expect=404, decision_id=str(uuid.uuid4()), input_tokens=1, output_tokens=1)

    assert body["error"] == "unknown_decision"
    assert not stored_reports().exists()


def test_a_second_report_for_the_same_decision_is_refused_with_409(api, counters, gpt4o, quotas):
    make_route("general", [gpt4o])
    decision = route(api, category="general", estimated_input_tokens=100)
    report(api, decision_id=decision["decision_id"], input_tokens=40, output_tokens=0, idempotency_key="a")

    again = report(api, expect=409, decision_id=decision["decision_id"], input_tokens=70, output_tokens=0, idempotency_key="b")
    report(api, expect=409, decision_id=decision["decision_id"], input_tokens=70, output_tokens=0)

    assert again["error"] == "decision_already_reported"
    flush_ledger()
    assert UsageEvent.objects.count() == 1
    assert quotas_used(api)["tokens"] == 40


def test_repeating_a_decision_report_with_its_idempotency_key_answers_200(api, counters, gpt4o, quotas):
    make_route("general", [gpt4o])
    decision = route(api, category="general", estimated_input_tokens=100)
    first = report(api, decision_id=decision["decision_id"], input_tokens=40, output_tokens=0, idempotency_key="a")

    again = report(api, expect=200, decision_id=decision["decision_id"], input_tokens=40, output_tokens=0, idempotency_key="a")

    assert again == first
    assert quotas_used(api)["tokens"] == 40


def test_a_report_for_a_refused_decision_is_refused_with_400(api, gpt4o):
    LLMModel.objects.filter(pk=gpt4o.pk).update(availability="unavailable")
    make_route("general", [gpt4o])
    refusal = api.post("/api/v1/route", {"category": "general"}, format="json").json()

    body = report(api, expect=400, decision_id=refusal["decision_id"], input_tokens=1, output_tokens=1)

    assert body["error"] == "decision_refused"


def test_an_unknown_model_is_refused_with_400_naming_the_valid_models(api, gpt4o):
    body = report(api, expect=400, model="gpt-5", input_tokens=1, output_tokens=1)

    assert body["error"] == "unknown_model"
    assert "gpt-4o" in body["detail"]


def test_a_report_naming_neither_model_nor_decision_is_refused_with_400(api, gpt4o):
    body = report(api, expect=400, input_tokens=1, output_tokens=1)

    assert body["error"] == "invalid_request"
    assert "model" in body["detail"]


def test_a_provider_wide_quota_counts_reports_for_every_model_of_the_provider(api, counters, openai, gpt4o, mini):
    QuotaFactory(provider=openai, name="tokens", metric="tokens", window="day", limit=Decimal(10_000))

    report(api, model="gpt-4o", input_tokens=100, output_tokens=0)
    report(api, model="gpt-4o-mini", input_tokens=20, output_tokens=0)

    assert quotas_used(api) == {"tokens": 120}


@pytest.mark.django_db(transaction=True)
def test_copies_of_one_report_arriving_together_are_stored_and_counted_once(counters, settings):
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") and settings.DATABASES["default"]["NAME"].startswith("file:"):
        _required_in_ci("a database that processes can share (an in-memory SQLite database cannot be; set DATABASE_URL)")
    openai = ProviderFactory(slug="openai", kind=ProviderKind.OPENAI)
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai)
    QuotaFactory(provider=openai, name="tokens", metric="tokens", window="minute", limit=10_000, models=[gpt4o])
    make_route("general", [gpt4o])
    raw_key = make_api_key()
    env = {"DJANGO_SETTINGS_MODULE": "switchboard.settings", "DATABASE_URL": database_url(settings), "REDIS_URL": settings.REDIS_URL,
           "ROUTER_REDIS_PREFIX": settings.ROUTER_REDIS_PREFIX}
    body = {"model": "gpt-4o", "input_tokens": 100, "output_tokens": 20, "idempotency_key": "report-1"}
    connections.close_all()
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(COPIES), context.Queue()
    copies = [context.Process(target=post_copy, args=(env, start, raw_key, "/api/v1/usage", body, results)) for _ in range(COPIES)]
    for copy in copies:
        copy.start()
    answers = [results.get(timeout=120) for _ in copies]
    for copy in copies:
        copy.join(timeout=30)

    assert sorted(status for status, _ in answers) == [200] * (COPIES - 1) + [201]
    assert len({answer["usage_id"] for _, answer in answers}) == 1
    flush_ledger()
    assert UsageEvent.objects.filter(idempotency_key="report-1").count() == 1
