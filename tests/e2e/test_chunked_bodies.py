"""Bodies are read as sent: a `Transfer-Encoding: chunked` body reaches the routing and usage calls whole, straight to
gunicorn and through deploy/nginx.conf; an empty one is a 400 and one over the limit a 413, in the API's error shape."""

import json

import pytest

from tests.e2e.processes import Http, Https, Response

EXPENSIVE = {"tier": "expensive"}  # the example policy's default tier is `medium`: an unread body would route there


def chunked(client: Http, path: str, body: bytes, pieces: int = 3) -> Response:
    """POST `body` in `pieces` chunks with no Content-Length, as a streaming client sends it."""
    size = max(1, len(body) // pieces)
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    connection = client.connect(30)
    try:
        connection.request("POST", path, body=iter(parts), encode_chunked=True,
                           headers={"Content-Type": "application/json", "Authorization": f"Bearer {client.bearer}",
                                    "Transfer-Encoding": "chunked"})
        answer = connection.getresponse()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
    finally:
        connection.close()


@pytest.fixture(params=["gunicorn", "nginx"])
def client(request, production) -> Http:
    key = production.key("route,usage,read")
    if request.param == "gunicorn":
        return Http(production.base_url, bearer=key)
    return Https(request.getfixturevalue("proxy").base_url, bearer=key)


def test_a_chunked_route_call_is_decided_on_its_body(client):
    answer = chunked(client, "/api/v1/route", json.dumps(EXPENSIVE).encode())

    assert answer.status == 200, answer
    assert answer.json()["model"]["key"] == "claude-opus-4-5"


def test_a_chunked_usage_report_is_recorded(client):
    answer = chunked(client, "/api/v1/usage", json.dumps({"model": "gpt-4o-mini", "input_tokens": 120, "output_tokens": 30}).encode())

    assert answer.status == 201, answer
    assert (answer.json()["input_tokens"], answer.json()["output_tokens"]) == (120, 30)


@pytest.mark.parametrize("path", ["/api/v1/route", "/api/v1/usage"])
def test_an_empty_chunked_body_is_a_400(client, path):
    answer = chunked(client, path, b"")

    assert answer.status == 400, answer
    assert answer.json()["error"] == "invalid_request" and "empty" in answer.json()["detail"]


def test_a_chunked_body_over_the_limit_is_a_413_in_the_error_shape(client):
    answer = chunked(client, "/api/v1/usage", b" " * (1024 * 1024) + b"{}", pieces=64)

    assert answer.status == 413, answer
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["error"] == "payload_too_large"
