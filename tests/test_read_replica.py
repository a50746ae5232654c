"""With a read replica set, the ops team's heavy reads of the audit (the overview, the fallback history's export, the
tuning) go to it; decisions, the policy and the decisions API that must hold every answered decision stay on the
primary. Health reports the replica and its lag."""

import csv
import io
from datetime import timedelta

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from providers.models import LLMModel
from router.models import Decision
from tests.factories import DecisionFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_api_key, make_route
from tests.replica_alias import REPLICA_TESTS, replica_for_the_module

pytestmark = REPLICA_TESTS


@pytest.fixture(autouse=True, scope="module")
def replica(django_db_setup, django_db_blocker):
    with replica_for_the_module(django_db_blocker):
        yield


@pytest.fixture(autouse=True)
def database_counters(settings):
    settings.REDIS_URL = ""


@pytest.fixture
def fallback():
    """gpt-4o, with a route and a daily quota, and a fallback decision of a minute ago."""
    openai = ProviderFactory(slug="openai", kind="openai")
    make_route("general", [LLMModelFactory(key="gpt-4o", provider=openai)])
    QuotaFactory(provider=openai, name="tokens-day")
    return DecisionFactory(created_at=timezone.now() - timedelta(minutes=1), outcome="fallback", model_key="gpt-4o-mini",
                           reason="fell back while the replica was watched")


def tables(queries: CaptureQueriesContext) -> str:
    return " ".join(query["sql"] for query in queries.captured_queries)


def test_the_overview_reads_the_audit_from_the_replica(client, viewer, fallback):
    with CaptureQueriesContext(connections["replica"]) as replica, CaptureQueriesContext(connections["default"]) as primary:
        response = client.get("/")

    assert response.status_code == 200
    assert "fell back while the replica was watched" in response.content.decode()
    assert "router_decision" in tables(replica) and "router_ledgerminute" in tables(replica)
    assert "router_decision" not in tables(primary) and "router_ledgerminute" not in tables(primary)
    assert "router_policy" not in tables(replica)  # the policy the router routes with is read from the primary


def test_the_fallback_history_export_reads_the_replica_while_it_streams(client, viewer, fallback):
    with CaptureQueriesContext(connections["replica"]) as replica:
        response = client.get("/fallbacks/", {"format": "csv"})
        rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))

    assert [row["decision_id"] for row in rows] == [str(fallback.id)]
    assert "router_decision" in tables(replica)


def test_the_tuning_reads_the_replica(client, viewer, fallback):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key()}")
    with CaptureQueriesContext(connections["replica"]) as replica:
        page = client.get("/tuning/")
        answer = api.get("/api/v1/quotas/tuning", {"days": 1})

    assert page.status_code == 200 and "tokens-day" in page.content.decode()
    assert [row["name"] for row in answer.json()["results"]] == ["tokens-day"]
    assert tables(replica).count("router_decision") >= 2 and "router_ledgerminute" in tables(replica)


def test_a_decision_and_the_decisions_api_stay_on_the_primary(fallback):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key()}")
    with CaptureQueriesContext(connections["replica"]) as replica:
        decided = api.post("/api/v1/route", {"category": "general"}, format="json")
        listed = api.get("/api/v1/decisions")

    assert decided.status_code == 200
    assert Decision.objects.using("default").filter(id=decided.json()["decision_id"]).exists()
    assert decided.json()["decision_id"] in [decision["decision_id"] for decision in listed.json()["results"]]
    assert replica.captured_queries == []


def test_a_policy_change_goes_to_the_primary(fallback):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key()}")
    document = api.get("/api/v1/policy").json()
    for model in document["models"]:
        model["context_window"] = 64_000
    with CaptureQueriesContext(connections["replica"]) as replica:
        changed = api.put("/api/v1/policy", document, format="json")

    assert changed.status_code == 200, changed.content
    assert LLMModel.objects.using("default").get(key="gpt-4o").context_window == 64_000
    assert replica.captured_queries == []


def test_health_reports_the_replica_and_its_lag(db):
    body = APIClient().get("/api/v1/health").json()

    # The test's replica is the primary itself: no replay, so no lag to report.
    assert body["replica"] == {"configured": True, "ok": True, "lag_seconds": None}
    assert not any("replica" in warning for warning in body["warnings"])
