"""A routing or usage call without a body is a 400, not a call with every default; `{}` still asks for the defaults.
A chunked body that the server cannot decode is a 411 (the WSGI application as a server without chunked support
calls it); the OpenAPI schema says both bodies are required. tests/e2e/test_chunked_bodies.py sends chunked bodies
through gunicorn and nginx."""

import io
import json
from wsgiref.util import setup_testing_defaults

import pytest

from tests.factories import LLMModelFactory, ProviderFactory, make_tier


@pytest.fixture
def default_tier(db):
    from router.models import Policy

    model = LLMModelFactory(key="gpt-4o-mini", provider=ProviderFactory(slug="openai", kind="openai"))
    policy = Policy.current()
    policy.default_tier = make_tier("cheap", [model])
    policy.save()
    return model


@pytest.mark.parametrize("path", ["/api/v1/route", "/api/v1/usage"])
@pytest.mark.parametrize("content_type", ["application/json", ""])
def test_an_empty_body_is_a_400(api, default_tier, path, content_type):
    answer = api.generic("POST", path, b"", content_type=content_type)

    assert answer.status_code == 400, answer.content
    assert answer.json() == {"error": "invalid_request",
                             "detail": "The request body is empty: send a JSON object ({} for every default)."}


def test_an_explicit_empty_object_still_asks_for_the_default_tier(api, default_tier):
    answer = api.generic("POST", "/api/v1/route", b"{}", content_type="application/json")

    assert answer.status_code == 200, answer.content
    assert answer.json()["model"]["key"] == "gpt-4o-mini"


def call_wsgi(environ_extra: dict, body: bytes) -> tuple[str, dict, dict]:
    from switchboard.wsgi import application

    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/route", "CONTENT_TYPE": "application/json",
               "wsgi.input": io.BytesIO(body), **environ_extra}
    setup_testing_defaults(environ)
    answered = {}

    def start_response(status, headers, exc_info=None):
        answered.update(status=status, headers=dict(headers))

    content = b"".join(application(environ, start_response))
    return answered["status"], answered["headers"], json.loads(content)


@pytest.mark.django_db
def test_a_chunked_body_a_server_cannot_decode_is_a_411():
    status, headers, body = call_wsgi({"HTTP_TRANSFER_ENCODING": "chunked"}, b"5\r\n{}   \r\n0\r\n\r\n")

    assert status == "411 Length Required"
    assert headers["Content-Type"] == "application/json"
    assert body["error"] == "length_required"


@pytest.mark.django_db
def test_a_transfer_encoding_other_than_chunked_is_refused():
    status, _, body = call_wsgi({"HTTP_TRANSFER_ENCODING": "gzip", "wsgi.input_terminated": True}, b"")

    assert status == "501 Not Implemented"
    assert body["error"] == "unsupported_transfer_encoding"


def test_the_schema_says_the_routing_and_usage_bodies_are_required(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    for path in ("/api/v1/route", "/api/v1/usage"):
        operation = schema["paths"][path]["post"]
        assert operation["requestBody"]["required"] is True
        assert "411" in operation["responses"]
