"""Every error under /api/ is JSON in the API's shape, whatever answers it (Django, DRF, the schema views),
a 500 included, with an error id that is in the log; pages outside /api/ keep Django's HTML."""

import logging

import pytest
from rest_framework.test import APIClient

from router import decisions
from tests.factories import LLMModelFactory, make_route


def assert_api_error(response, status: int, error: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == error
    assert body["detail"]
    return body


@pytest.mark.parametrize("path", ["/api/v1/route", "/api/v1/quotas", "/api/nope", "/api/schema/"])
def test_a_host_this_server_does_not_serve_is_answered_400_json(db, path):
    response = APIClient().get(path, HTTP_HOST="evil.example")

    assert_api_error(response, 400, "invalid_host")


def test_a_routing_call_to_a_host_this_server_does_not_serve_is_answered_400_json(api):
    response = api.post("/api/v1/route", {"category": "general"}, format="json", HTTP_HOST="evil.example")

    assert_api_error(response, 400, "invalid_host")


@pytest.mark.parametrize("path", ["/api/nope", "/api/", "/api/schema/nope", "/api/v2/route"])
def test_an_unknown_path_under_api_is_answered_404_json(api, path):
    assert_api_error(api.get(path), 404, "not_found")


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_a_wrong_method_on_the_schema_and_the_docs_is_answered_405_json(db, path):
    response = APIClient().post(path, {}, format="json")

    assert_api_error(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


def test_pages_outside_the_api_keep_html_errors(db):
    assert APIClient().get("/no-such-page/")["Content-Type"].startswith("text/html")
    assert APIClient().get("/", HTTP_HOST="evil.example")["Content-Type"].startswith("text/html")


def test_a_decision_that_keeps_losing_the_race_for_a_quota_is_answered_503_json(api, monkeypatch):
    make_route("general", [LLMModelFactory(key="gpt-4o")])
    monkeypatch.setattr(decisions, "MAX_RACES", 0)  # every race lost: no read gets to reserve

    response = api.post("/api/v1/route", {"category": "general"}, format="json")

    assert_api_error(response, 503, "counters_busy")
    assert response["Retry-After"] == "1"


def test_an_unexpected_error_is_answered_500_json_with_the_error_id_of_its_log_line(api, monkeypatch, caplog):
    make_route("general", [LLMModelFactory(key="gpt-4o")])

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(decisions, "walk", broken)  # stands in for any bug in the decision's path
    api.raise_request_exception = False

    with caplog.at_level(logging.ERROR):
        response = api.post("/api/v1/route", {"category": "general", "dry_run": True}, format="json")

    body = assert_api_error(response, 500, "internal_error")
    assert body["error_id"] in body["detail"]
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert body["error_id"] in errors[0].getMessage()
    assert errors[0].exc_info[0] is ZeroDivisionError
