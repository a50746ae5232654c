"""Routing calls and usage reports that the views would take as they are get answered by
RoutingCallMiddleware, ahead of the rest of the middleware and URL routing; any other request goes
on down the chain, where the view and DRF answer it."""

import json

import pytest
from django.core.exceptions import DisallowedHost
from django.http import HttpResponse
from django.test import RequestFactory

from router.middleware import RoutingCallMiddleware
from tests.calls import stored_decisions
from tests.factories import LLMModelFactory, make_api_key, make_route

DOWN_THE_CHAIN = HttpResponse("answered further down the chain", status=299)


@pytest.fixture
def middleware():
    return RoutingCallMiddleware(lambda request: DOWN_THE_CHAIN)


@pytest.fixture
def general(db):
    make_route("general", [LLMModelFactory(key="gpt-4o")])


def _post(path: str, body: str, key: str, content_type: str = "application/json", **extra):
    return RequestFactory().generic("POST", path, body, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {key}", **extra)


def test_a_routing_call_is_answered_here(middleware, general):
    response = middleware(_post("/api/v1/route", '{"category": "general"}', make_api_key()))

    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["model"]["key"] == "gpt-4o"
    assert (response["Content-Type"], response["Content-Length"]) == ("application/json", str(len(response.content)))
    assert response["X-Frame-Options"] == "DENY"


def test_a_usage_report_is_answered_here(middleware, general):
    body = '{"model": "gpt-4o", "input_tokens": 10, "output_tokens": 5, "idempotency_key": "call-1"}'

    first = middleware(_post("/api/v1/usage", body, make_api_key()))
    again = middleware(_post("/api/v1/usage", body, make_api_key()))

    assert (first.status_code, again.status_code) == (201, 200)
    assert json.loads(first.content)["usage_id"] == json.loads(again.content)["usage_id"]


def test_an_error_the_service_raises_is_answered_here_in_the_api_error_shape(middleware, general):
    response = middleware(_post("/api/v1/route", '{"category": "nope"}', make_api_key()))

    assert response.status_code == 400
    body = json.loads(response.content)
    assert (body["error"], body["cause"], body["valid"]) == ("unroutable", "unknown_category", ["general"])


@pytest.mark.parametrize("body, content_type, scopes", [
    ('{"category": "general",', "application/json", ("route",)),
    ('{"category": "general", "estimated_input_tokens": NaN}', "application/json", ("route",)),
    ('{"category": "general", "colour": "blue"}', "application/json", ("route",)),
    ('{"category": "general", "estimated_input_tokens": -1}', "application/json", ("route",)),
    ('{"category": "general", "estimated_input_tokens": 100000000000000000000}', "application/json", ("route",)),
    ('{"category": "general"}', "text/plain", ("route",)),
    ('{"category": "general"}', "application/json", ("usage", "read")),
])
def test_a_call_the_view_would_not_take_as_it_is_goes_down_the_chain(middleware, general, body, content_type, scopes):
    response = middleware(_post("/api/v1/route", body, make_api_key(scopes=scopes), content_type=content_type))

    assert response is DOWN_THE_CHAIN
    assert not stored_decisions().exists()


def test_an_unknown_key_a_get_and_other_paths_go_down_the_chain(middleware, general):
    factory = RequestFactory()

    assert middleware(_post("/api/v1/route", '{"category": "general"}', "unknown.key")) is DOWN_THE_CHAIN
    assert middleware(factory.get("/api/v1/route")) is DOWN_THE_CHAIN
    assert middleware(_post("/api/v1/route/", '{"category": "general"}', make_api_key())) is DOWN_THE_CHAIN
    assert middleware(_post("/api/v1/quotas", "{}", make_api_key())) is DOWN_THE_CHAIN


def test_a_host_not_allowed_is_refused_as_django_refuses_it(middleware, general):
    with pytest.raises(DisallowedHost):
        middleware(_post("/api/v1/route", '{"category": "general"}', make_api_key(), HTTP_HOST="evil.example"))
