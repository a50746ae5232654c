"""Bad input is answered, not crashed on: every error is JSON with "error" and "detail"."""

import pytest

from tests.calls import stored_decisions, stored_reports
from tests.factories import LLMModelFactory, make_route


@pytest.fixture
def general(db):
    make_route("general", [LLMModelFactory(key="gpt-4o")])


def post(api, path, body: str, content_type="application/json"):
    response = api.generic("POST", path, body, content_type=content_type)
    assert response["Content-Type"].startswith("application/json"), response.content
    body = response.json()
    assert body["error"] and body["detail"], body
    return response


def test_malformed_json_is_answered_with_400_malformed_request(api, general):
    response = post(api, "/api/v1/route", '{"category": "general",')

    assert response.status_code == 400
    assert response.json()["error"] == "malformed_request"
    assert not stored_decisions().exists()


def test_json_nested_too_deeply_is_answered_with_400_malformed_request(api, general):
    response = post(api, "/api/v1/route", "[" * 50_000)

    assert response.status_code == 400
    assert response.json()["error"] == "malformed_request"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_number_json_does_not_have_is_answered_with_400_malformed_request(api, general, constant):
    response = post(api, "/api/v1/route", f'{{"category": "general", "estimated_input_tokens": {constant}}}')

    assert response.status_code == 400
    assert response.json()["error"] == "malformed_request"
    assert not stored_decisions().exists()


def test_a_body_that_is_not_utf8_is_answered_with_400_malformed_request(api, general):
    response = api.generic("POST", "/api/v1/route", '{"category": "général"}'.encode("latin-1"), content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"] == "malformed_request"


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON", "application/json;charset=UTF-8"])
def test_json_is_taken_whatever_the_spelling_of_its_content_type(api, general, content_type):
    response = api.generic("POST", "/api/v1/route", '{"category": "general"}', content_type=content_type)

    assert response.status_code == 200
    assert response.json()["model"]["key"] == "gpt-4o"


def test_api_answers_carry_no_browser_session_or_csrf_cookie(api, general):
    response = api.post("/api/v1/route", {"category": "general"}, format="json")

    assert response.status_code == 200
    assert not response.cookies
    assert "Cookie" not in response.get("Vary", "")


@pytest.mark.parametrize("body", ["[]", '"general"', "42", "null"])
def test_a_body_that_is_not_a_json_object_is_answered_with_400(api, general, body):
    assert post(api, "/api/v1/route", body).status_code == 400


def test_an_unknown_field_is_answered_with_400_naming_it(api, general):
    response = post(api, "/api/v1/route", '{"category": "general", "complexty": "high"}')

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "complexty" in response.json()["detail"]
    assert not stored_decisions().exists()


def test_an_unknown_field_in_a_usage_report_is_answered_with_400_naming_it(api, general):
    response = post(api, "/api/v1/usage", '{"model": "gpt-4o", "input_tokens": 1, "output_tokens": 1, "tokens": 2}')

    assert response.status_code == 400
    assert "tokens" in response.json()["fields"]
    assert not stored_reports().exists()


@pytest.mark.parametrize("path, body, field", [
    ("/api/v1/route", '{"category": "general", "estimated_input_tokens": "1200"}', "estimated_input_tokens"),
    ("/api/v1/route", '{"category": "general", "estimated_output_tokens": 12.5}', "estimated_output_tokens"),
    ("/api/v1/route", '{"category": "general", "estimated_input_tokens": true}', "estimated_input_tokens"),
    ("/api/v1/route", '{"category": "general", "dry_run": "yes"}', "dry_run"),
    ("/api/v1/route", '{"category": "general", "dry_run": 1}', "dry_run"),
    ("/api/v1/route", '{"category": ["general"]}', "category"),
    ("/api/v1/usage", '{"model": "gpt-4o", "input_tokens": "10", "output_tokens": 1}', "input_tokens"),
    ("/api/v1/usage", '{"model": "gpt-4o", "input_tokens": 10, "output_tokens": 1, "status": "timeout"}', "status"),
    ("/api/v1/usage", '{"model": "gpt-4o", "input_tokens": 10, "output_tokens": 1, "decision_id": "not-a-uuid"}', "decision_id"),
    ("/api/v1/usage", '{"model": "gpt-4o", "input_tokens": 10, "output_tokens": 1, "retry_after": "30"}', "retry_after"),
    ("/api/v1/usage", '{"model": "gpt-4o", "input_tokens": 10, "output_tokens": 1, "ratelimit_headers": ["x"]}', "ratelimit_headers"),
    ("/api/v1/usage", '{"model": "gpt 4o!", "input_tokens": 10, "output_tokens": 1}', "model"),
])
def test_a_value_of_the_wrong_type_is_answered_with_400_naming_the_field(api, general, path, body, field):
    response = post(api, path, body)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert field in response.json()["fields"]
    assert response.json()["detail"].startswith(field)


@pytest.mark.parametrize("path, body, field", [
    ("/api/v1/route", '{"category": "general", "estimated_input_tokens": -1}', "estimated_input_tokens"),
    ("/api/v1/route", '{"category": "general", "estimated_output_tokens": 10000000000}', "estimated_output_tokens"),
    ("/api/v1/route", '{"category": "general", "estimated_input_tokens": 1e400}', "estimated_input_tokens"),
    ("/api/v1/route", '{"category": "general", "estimated_input_tokens": 100000000000000000000000000000000000000000}',
     "estimated_input_tokens"),
    ("/api/v1/usage", '{"model": "gpt-4o", "input_tokens": -5, "output_tokens": 1}', "input_tokens"),
    ("/api/v1/usage", '{"model": "gpt-4o", "input_tokens": 5, "output_tokens": 99999999999}', "output_tokens"),
    ("/api/v1/usage", '{"model": "gpt-4o", "input_tokens": 5, "output_tokens": 1, "retry_after": -1}', "retry_after"),
])
def test_a_negative_or_absurd_count_is_answered_with_400(api, general, path, body, field):
    response = post(api, path, body)

    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert not stored_reports().exists()


def test_a_header_name_that_is_not_one_is_answered_with_400(api, general):
    response = post(api, "/api/v1/usage",
                    '{"model": "gpt-4o", "input_tokens": 1, "output_tokens": 1, "ratelimit_headers": {"\\u0000": "1"}}')

    assert response.status_code == 400
    assert "ratelimit_headers" in response.json()["fields"]


@pytest.mark.parametrize("headers", [
    {"x-ratelimit-remaining-tokens": "1e400", "x-ratelimit-reset-tokens": "9" * 150 + "s"},
    {"anthropic-ratelimit-requests-remaining": "inf", "anthropic-ratelimit-requests-reset": "0001-01-01T00:00:00"},
    {"anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": "9999-12-31T23:59:59Z"},
])
def test_nonsense_rate_limit_headers_are_stored_without_breaking_routing(api, general, headers):
    report = {"model": "gpt-4o", "input_tokens": 1, "output_tokens": 1, "ratelimit_headers": headers}

    assert api.post("/api/v1/usage", report, format="json").status_code == 201
    assert api.post("/api/v1/route", {"category": "general"}, format="json").status_code in (200, 503)


def test_an_oversized_body_is_answered_with_413_json(api, general):
    response = post(api, "/api/v1/route", '{"category": "' + "x" * (64 * 1024) + '"}')

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_a_body_that_is_not_json_is_answered_with_415(api, general):
    response = post(api, "/api/v1/route", "category=general", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


def test_a_wrong_method_is_answered_with_405_json(api, general):
    response = api.get("/api/v1/route")

    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert response.json()["detail"]


@pytest.mark.parametrize("body, field", [('{"category": ""}', "category"), ('{"tier": "' + "t" * 65 + '"}', "tier")])
def test_blank_or_overlong_names_are_answered_with_400(api, general, body, field):
    response = post(api, "/api/v1/route", body)

    assert response.status_code == 400
    assert field in response.json()["fields"]


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/route/"])
def test_an_unknown_api_path_is_answered_with_404_json(api, general, path):
    response = api.post(path, {"category": "general"}, format="json")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize(("path", "says"), [
    ("/api/v1/decisions?outcom=fallback", "Unknown query parameter 'outcom'"),
    ("/api/v1/decisions?outcome=", "outcome: a filter may not be empty"),
    ("/api/v1/models?page=0", "page must be a page number"),
    ("/api/v1/decisions?format=csv&page=1.5", "page must be a page number"),
    ("/api/v1/models?enabled=1", "enabled must be true or false"),
    ("/api/v1/quotas?provider=openai", "Unknown query parameter 'provider': it takes page"),
    ("/api/v1/policy?format=xml", "format must be json or yaml"),
])
def test_a_query_the_call_does_not_take_is_refused_not_ignored(api, path, says):
    response = api.get(path)

    assert response.status_code == 400
    assert says in response.json()["detail"]


def test_a_routing_call_with_a_query_string_is_refused(api):
    response = api.post("/api/v1/route?dry_run=true", {"category": "general"}, format="json")

    assert response.status_code == 400
    assert "Unknown query parameter 'dry_run': it takes none" in response.json()["detail"]
