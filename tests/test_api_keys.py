"""API keys: created by a command that shows them once, stored hashed, scoped and revocable."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.test import APIClient

from router.counters import flush_ledger
from router.models import ApiKey, Decision
from tests.factories import LLMModelFactory, make_api_key, make_tier


def create_api_key(*args) -> str:
    out = StringIO()
    call_command("create_api_key", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def client_with(raw_key: str | None = None, header: str | None = None) -> APIClient:
    client = APIClient()
    if header or raw_key:
        client.credentials(HTTP_AUTHORIZATION=header or f"Bearer {raw_key}")
    return client


@pytest.fixture
def cheap(db):
    return make_tier("cheap", [LLMModelFactory(key="gpt-4o-mini")])


def test_the_command_prints_the_key_alone_on_the_last_line(db, cheap):
    output = create_api_key("svc", "--scopes", "route,usage")

    raw_key = output.splitlines()[-1]
    api_key = ApiKey.objects.get(name="svc")
    assert api_key.scopes == ["route", "usage"]
    assert ApiKey.objects.get_from_key(raw_key) == api_key
    assert client_with(raw_key).post("/api/v1/route", {"tier": "cheap"}, format="json").status_code == 200


def test_only_a_hash_of_the_key_is_stored(db):
    raw_key = create_api_key("svc", "--scopes", "route").splitlines()[-1]
    secret = raw_key.split(".", 1)[1]

    row = ApiKey.objects.filter(name="svc").values().get()

    assert all(secret not in str(value) for value in row.values())
    assert all(raw_key not in str(value) for value in row.values())


@pytest.mark.parametrize("scopes", ["route,everything", "", "READ"])
def test_a_bad_scopes_value_is_refused_naming_the_valid_scopes(db, scopes):
    with pytest.raises(CommandError) as error:
        create_api_key("svc", "--scopes", scopes)

    assert "route, usage, read, admin" in str(error.value)
    assert not ApiKey.objects.exists()


def test_a_request_without_a_key_is_answered_401_json_with_www_authenticate(db, cheap):
    response = client_with().post("/api/v1/route", {"tier": "cheap"}, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"
    assert response.json()["detail"]


@pytest.mark.parametrize("header", ["Bearer not-a-key", "Bearer abcdefgh.0123456789abcdef0123456789abcdef", "Token x", "Bearer "])
def test_an_unknown_or_malformed_key_is_answered_401(db, cheap, header):
    response = client_with(header=header).post("/api/v1/route", {"tier": "cheap"}, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"


def test_a_revoked_key_is_refused_from_the_next_request(db, settings, cheap):
    settings.ROUTER_POLICY_RECHECK_SECONDS = 0
    raw_key = make_api_key("svc")
    client = client_with(raw_key)
    assert client.post("/api/v1/route", {"tier": "cheap"}, format="json").status_code == 200

    ApiKey.objects.filter(name="svc").update(revoked=True)
    response = client.post("/api/v1/route", {"tier": "cheap"}, format="json")

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_an_expired_key_is_refused(db, cheap):
    _, raw_key = ApiKey.objects.create_key(name="svc", scopes=["route"], expiry_date=timezone.now() - timedelta(minutes=1))

    assert client_with(raw_key).post("/api/v1/route", {"tier": "cheap"}, format="json").status_code == 401


def test_a_key_without_the_read_scope_is_answered_403_on_decisions(db):
    client = client_with(make_api_key("svc", scopes=("route", "usage")))

    response = client.get("/api/v1/decisions")

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert "read" in response.json()["detail"]


@pytest.mark.parametrize("method, path, scope", [
    ("post", "/api/v1/route", "route"),
    ("post", "/api/v1/usage", "usage"),
    ("get", "/api/v1/quotas", "read"),
    ("get", "/api/v1/models", "read"),
    ("get", "/api/v1/policy", "admin"),
])
def test_each_endpoint_needs_its_scope(db, method, path, scope):
    others = tuple(s for s in ("route", "usage", "read", "admin") if s != scope)
    client = client_with(make_api_key("svc", scopes=others))

    response = getattr(client, method)(path)

    assert response.status_code == 403
    assert f"'{scope}'" in response.json()["detail"]


def test_using_a_key_records_when_it_was_last_used(db, cheap):
    raw_key = make_api_key("svc")

    client_with(raw_key).post("/api/v1/route", {"tier": "cheap"}, format="json")

    assert ApiKey.objects.get(name="svc").last_used_at is not None


def test_the_caller_of_a_decision_is_the_key_name(db, cheap):
    client = client_with(make_api_key("billing-service"))

    decision_id = client.post("/api/v1/route", {"tier": "cheap"}, format="json").json()["decision_id"]

    flush_ledger()
    assert Decision.objects.get(pk=decision_id).caller == "billing-service"
