"""Routing calls and usage reports that the views would take as they are get answered by router.wsgi.RoutingCalls,
before Django's request handling, with the headers Django would add; any other request goes on to Django, where the
view and DRF answer it."""

import io
import json
import logging
from wsgiref.util import setup_testing_defaults

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from router.counters import redis_counters
from router.wsgi import RoutingCalls
from tests.calls import stored_decisions
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_api_key, make_route


class Django:
    """Stands in for Django behind RoutingCalls: records what reached it, body included."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, environ, start_response):
        self.bodies.append(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        start_response("299 Down The Chain", [("Content-Type", "text/plain")])
        return [b"answered by Django"]


@pytest.fixture
def django():
    return Django()


@pytest.fixture
def general(db):
    make_route("general", [LLMModelFactory(key="gpt-4o")])


def environ_for(path: str, body: bytes | str, key: str, content_type: str = "application/json", **extra) -> dict:
    body = body.encode() if isinstance(body, str) else body
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(body)),
               "HTTP_HOST": "testserver", "HTTP_AUTHORIZATION": f"Bearer {key}", "wsgi.input": io.BytesIO(body), **extra}
    setup_testing_defaults(environ)
    return environ


def call(app, environ: dict) -> tuple[int, dict[str, str], bytes]:
    """The app's answer: status, headers and content. As Django's test client does, the test's database connection is
    not closed at the start and end of the request, which would end the test's transaction."""
    answered = {}

    def start_response(status, headers, exc_info=None):
        answered.update(status=int(status.split()[0]), headers=dict(headers))

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        content = b"".join(app(environ, start_response))
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return answered["status"], answered["headers"], content


def test_a_routing_call_is_answered_here(django, general):
    status, headers, content = call(RoutingCalls(django), environ_for("/api/v1/route", '{"category": "general"}', make_api_key()))

    assert status == 200, content
    assert json.loads(content)["model"]["key"] == "gpt-4o"
    assert (headers["Content-Type"], headers["Content-Length"]) == ("application/json", str(len(content)))
    assert django.bodies == []


def test_the_answer_carries_the_headers_django_adds(general):
    from switchboard.wsgi import django_application

    key = make_api_key()
    _, here, _ = call(RoutingCalls(django_application), environ_for("/api/v1/route", '{"category": "general"}', key))
    _, by_django, _ = call(django_application, environ_for("/api/v1/route", '{"category": "general"}', key))

    assert {name: value for name, value in here.items() if name != "Content-Length"} == \
        {name: value for name, value in by_django.items() if name not in ("Content-Length", "Vary", "Allow")}
    assert (here["X-Frame-Options"], here["X-Content-Type-Options"]) == ("DENY", "nosniff")


def test_over_https_the_answer_carries_strict_transport_security_as_django_sets_it(general, settings):
    settings.SECURE_HSTS_SECONDS = 3600

    _, headers, _ = call(RoutingCalls(Django()), environ_for("/api/v1/route", '{"category": "general"}', make_api_key(),
                                                             **{"wsgi.url_scheme": "https"}))

    assert headers["Strict-Transport-Security"].startswith("max-age=3600")


def test_a_usage_report_is_answered_here(django, general):
    body = '{"model": "gpt-4o", "input_tokens": 10, "output_tokens": 5, "idempotency_key": "call-1"}'

    first = call(RoutingCalls(django), environ_for("/api/v1/usage", body, make_api_key()))
    again = call(RoutingCalls(django), environ_for("/api/v1/usage", body, make_api_key()))

    assert (first[0], again[0]) == (201, 200)
    assert json.loads(first[2])["usage_id"] == json.loads(again[2])["usage_id"]


def test_an_error_the_service_raises_is_answered_here_in_the_api_error_shape(django, general):
    status, _, content = call(RoutingCalls(django), environ_for("/api/v1/route", '{"category": "nope"}', make_api_key()))

    assert status == 400
    body = json.loads(content)
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
def test_a_call_the_view_would_not_take_as_it_is_goes_on_to_django_body_and_all(django, general, body, content_type, scopes):
    status, _, _ = call(RoutingCalls(django), environ_for("/api/v1/route", body, make_api_key(scopes=scopes), content_type=content_type))

    assert status == 299
    assert django.bodies == [body.encode()]
    assert not stored_decisions().exists()


@pytest.mark.parametrize("path, method, extra", [
    ("/api/v1/route", "POST", {"HTTP_AUTHORIZATION": "Bearer unknown.key"}),
    ("/api/v1/route", "GET", {}),
    ("/api/v1/route/", "POST", {}),
    ("/api/v1/quotas", "POST", {}),
    ("/api/v1/route", "POST", {"QUERY_STRING": "dry_run=1"}),
    ("/api/v1/route", "POST", {"HTTP_HOST": "evil.example"}),
])
def test_unknown_keys_other_methods_and_paths_query_strings_and_hosts_not_allowed_go_on_to_django(django, general, path, method, extra):
    environ = environ_for(path, '{"category": "general"}', make_api_key()) | {"REQUEST_METHOD": method} | extra

    assert call(RoutingCalls(django), environ)[0] == 299
    assert not stored_decisions().exists()


def test_a_host_not_allowed_is_refused_by_django_in_json(general):
    from switchboard.wsgi import application

    status, _, content = call(application, environ_for("/api/v1/route", '{"category": "general"}', make_api_key(),
                                                       HTTP_HOST="evil.example"))

    assert status == 400
    assert json.loads(content)["error"] == "invalid_host"
    assert not stored_decisions().exists()


def test_a_call_over_http_when_https_is_required_is_redirected_by_django(general, settings):
    settings.SECURE_SSL_REDIRECT = True

    status, headers, _ = call(RoutingCalls(WSGIHandler()), environ_for("/api/v1/route", '{"category": "general"}', make_api_key()))

    assert status == 301
    assert headers["Location"].startswith("https://")
    assert not stored_decisions().exists()


def test_a_call_behind_a_proxy_that_says_https_is_answered_here(django, general, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

    status, _, _ = call(RoutingCalls(django), environ_for("/api/v1/route", '{"category": "general"}', make_api_key(),
                                                          HTTP_X_FORWARDED_PROTO="https"))

    assert status == 200


def test_a_bug_on_this_path_is_answered_500_json_with_the_error_id_of_its_log_line(django, db, redis_client, caplog):
    openai = ProviderFactory(slug="openai", kind="openai")
    gpt4o = LLMModelFactory(key="gpt-4o", provider=openai)
    make_route("general", [gpt4o])
    quota = QuotaFactory(provider=openai, name="requests", metric="requests", window="minute", limit=100, models=[gpt4o])
    call(RoutingCalls(django), environ_for("/api/v1/route", '{"category": "general"}', make_api_key()))
    key = redis_counters().quota_key(quota.id)
    redis_client.delete(key)
    redis_client.set(key, "not a hash")  # the script's HGET fails: WRONGTYPE

    with caplog.at_level(logging.ERROR):
        status, headers, content = call(RoutingCalls(django), environ_for("/api/v1/route", '{"category": "general"}', make_api_key()))

    redis_client.delete(key)
    assert status == 500
    body = json.loads(content)
    assert (body["error"], headers["Content-Type"]) == ("internal_error", "application/json")
    assert any(body["error_id"] in record.getMessage() for record in caplog.records if record.exc_info)
