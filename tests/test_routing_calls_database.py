"""A routing call answered before Django's handler (router.wsgi.RoutingCalls) sends Django's `request_finished` after
it reached the database, so that a connection that failed or outlived CONN_MAX_AGE is closed as at the end of any
request; a call answered from what the process holds in memory sends no signal."""

import json

import pytest
from django.core.signals import request_finished
from django.db import connection

from router.wsgi import RoutingCalls
from tests.factories import LLMModelFactory, make_api_key, make_route
from tests.test_routing_calls_wsgi import Django, call, environ_for

ROUTE = '{"category": "general"}'


@pytest.fixture
def finished():
    """The senders of request_finished, in order."""
    senders = []

    def note(sender, **kwargs):
        senders.append(sender)

    request_finished.connect(note)
    yield senders
    request_finished.disconnect(note)


def answer(app, environ: dict) -> tuple[int, dict]:
    """The app's status and JSON body, with Django's connection handling on request_finished left as it is."""
    answered = {}

    def start_response(status, headers, exc_info=None):
        answered["status"] = int(status.split()[0])

    content = b"".join(app(environ, start_response))
    return answered["status"], json.loads(content)


def test_a_call_that_reaches_the_database_sends_request_finished_and_one_answered_from_memory_sends_none(
        db, redis_client, settings, finished):
    settings.ROUTER_POLICY_RECHECK_SECONDS = 60
    make_route("general", [LLMModelFactory(key="gpt-4o")])
    app, key = RoutingCalls(Django()), make_api_key()

    first, _, _ = call(app, environ_for("/api/v1/route", ROUTE, key))  # reads the policy and the key from the database
    after_first = list(finished)
    second, _, _ = call(app, environ_for("/api/v1/route", ROUTE, key))  # both are held in memory now

    assert (first, second) == (200, 200)
    assert after_first == [RoutingCalls]
    assert finished == [RoutingCalls]


@pytest.mark.django_db(transaction=True)
def test_a_connection_that_failed_during_a_call_is_closed_after_it_and_the_next_call_reconnects(postgres_only, redis_client, finished):
    make_route("general", [LLMModelFactory(key="gpt-4o")])
    app, key = RoutingCalls(Django()), make_api_key()
    connection.ensure_connection()
    connection.connection.close()  # gone underneath Django, as after a PostgreSQL restart

    failed, failed_body = answer(app, environ_for("/api/v1/route", ROUTE, key))
    closed = connection.connection is None
    routed, routed_body = answer(app, environ_for("/api/v1/route", ROUTE, key))

    assert (failed, failed_body["error"]) == (503, "database_unavailable")
    assert closed and finished[0] is RoutingCalls
    assert (routed, routed_body["model"]["key"]) == (200, "gpt-4o")
