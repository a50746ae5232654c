"""A read replica that cannot be reached: the ops pages read the primary instead, with one warning in the log, and
health says the replica is unreachable without failing."""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import DecisionFactory, make_api_key
from tests.replica_alias import REPLICA_TESTS, replica_for_the_module

pytestmark = REPLICA_TESTS


@pytest.fixture(autouse=True, scope="module")
def unreachable_replica(django_db_setup, django_db_blocker):
    """A replica on a port nothing listens on."""
    with replica_for_the_module(django_db_blocker, HOST="127.0.0.1", PORT=1):
        yield


@pytest.fixture(autouse=True)
def database_counters(settings):
    settings.REDIS_URL = ""


def test_the_overview_and_the_export_answer_from_the_primary(client, viewer, caplog):
    fallback = DecisionFactory(created_at=timezone.now() - timedelta(minutes=1), outcome="fallback", model_key="gpt-4o-mini",
                               reason="fell back while the replica was down")

    with caplog.at_level(logging.WARNING, logger="router.replica"):
        page = client.get("/")
        export = client.get("/fallbacks/", {"format": "csv"})

    assert page.status_code == 200
    assert "fell back while the replica was down" in page.content.decode()
    assert str(fallback.id) in b"".join(export.streaming_content).decode()
    # One line for each request.
    assert [record.getMessage() for record in caplog.records if record.name == "router.replica"] == [
        "The read replica cannot be reached (OperationalError); this request reads the primary."] * 2


def test_the_tuning_answers_from_the_primary(db):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key()}")

    assert api.get("/api/v1/quotas/tuning", {"days": 1}).status_code == 200


def test_health_says_the_replica_is_unreachable_and_warns(db):
    response = APIClient().get("/api/v1/health")

    body = response.json()
    assert response.status_code == 200 and body["status"] != "down"
    assert body["replica"] == {"configured": True, "ok": False, "error": "OperationalError"}
    assert ("The read replica (DATABASE_REPLICA_URL) cannot be reached: the dashboard, its exports and the tuning read the "
            "primary until it answers again.") in body["warnings"]
