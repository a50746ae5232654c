"""One shape per concept (docs/api.md), over the answers of every endpoint of the schema, successes and errors:
a model is `{"key", "provider", ...}` wherever one appears, an id is named for what it identifies, every time is
RFC 3339 UTC with `Z` (traces included), an absent value is null (never ""), and `reason`, `cause` and `detail`
each keep their one meaning."""

import re
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from providers.models import Provider
from router.models import Policy
from switchboard.vocabulary import ProviderKind, SkipReason
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_route, make_tier

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")
TIMES = {"created_at", "checked_at", "not_found_at", "until", "frees_at", "soft_at", "hard_at", "last_at", "last_seen", "down_since"}
MODELS = {"model", "primary", "answered_by"}
TRACE_ENTRY = {"model", "verdict", "cause", "reason", "until", "quotas"}
# What the rules do not read: a 400's field names and valid values, and the policy file's own format.
NOT_SHAPES = {"fields", "valid", "problems", "changes"}


def is_model(value) -> bool:
    return isinstance(value, dict) and isinstance(value.get("key"), str) and value["key"] != "" and "provider" in value \
        and (value["provider"] is None or isinstance(value["provider"], str) and value["provider"] != "")


def problems(value, path: str = "") -> list[str]:
    """Where `value`, part of an answer, breaks a rule of docs/api.md."""
    found = []
    if isinstance(value, dict):
        for name, item in value.items():
            where = f"{path}.{name}"
            if name == "id":
                found.append(f"{where}: an id is named for what it identifies")
            if name in TIMES and item is not None and not (isinstance(item, str) and RFC3339_UTC.fullmatch(item)):
                found.append(f"{where}: {item!r} is not RFC 3339 UTC with Z")
            if name in MODELS and item is not None and not is_model(item):
                found.append(f"{where}: {item!r} is not a model object")
            if name == "models" and not (isinstance(item, list) and all(is_model(model) for model in item)):
                found.append(f"{where}: {item!r} is not a list of model objects")
            if name == "detail" and path:
                found.append(f"{where}: detail is an error's sentence, at the top of an error answer")
            if name == "trace":
                found += [f"{where}: entry keys {sorted(entry)}" for entry in item if set(entry) != TRACE_ENTRY]
                found += [f"{where}: cause {entry.get('cause')!r}" for entry in item
                          if entry.get("cause") not in (None, *SkipReason.values) or (entry.get("cause") is None) != (entry["verdict"] == "chosen")]
            if name not in NOT_SHAPES:
                found += problems(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += problems(item, f"{path}[{index}]")
    elif value == "":
        found.append(f"{path}: an absent value is null, never \"\"")
    return found


class Recorder:
    """Calls the API and keeps every JSON answer with the operation it answers (method, path as the schema names it)."""

    def __init__(self, client: APIClient) -> None:
        self.client = client
        self.answers: list[tuple[str, str, int, dict]] = []

    def call(self, method: str, path: str, template: str | None = None, body=None, expect: int = 200, client: APIClient | None = None,
             **extra) -> dict:
        if body is not None and "content_type" not in extra:
            extra["format"] = "json"
        response = getattr(client or self.client, method)(path, body, **extra)
        assert response.status_code == expect, (path, response.content)
        answer = response.json()
        self.answers.append((method, template or path.split("?")[0], response.status_code, answer))
        return answer


@pytest.fixture
def answers(db, api) -> list[tuple[str, str, int, dict]]:
    openai = ProviderFactory(slug="openai", kind=ProviderKind.OPENAI)
    anthropic = ProviderFactory(slug="anthropic", kind=ProviderKind.ANTHROPIC)
    gpt = LLMModelFactory(key="gpt-4o", provider=openai, input_cost_per_mtok=Decimal("2.5"))
    mini = LLMModelFactory(key="gpt-4o-mini", provider=openai)
    sonnet = LLMModelFactory(key="claude-sonnet-4-5", provider=anthropic)
    off = LLMModelFactory(key="retired", provider=openai, enabled=False)
    QuotaFactory(provider=openai, name="gpt-4o-week", metric="tokens", window="week", limit=1000, models=[gpt])
    QuotaFactory(provider=openai, name="requests-day", metric="requests", window="day", limit=1000, soft_limit_ratio=1)
    make_route("general", [gpt, mini])
    make_route(CategoryFactory(slug="security_auth_change", fallback="never"), [gpt])
    make_route("drafting", [sonnet, mini])
    make_route("archive", [off])
    make_tier("cheap", [mini])
    Provider.objects.filter(pk=anthropic.pk).update(cooldown_failures=1)
    calls = Recorder(api)
    route, usage = "/api/v1/route", "/api/v1/usage"

    first = calls.call("post", route, body={"category": "general", "estimated_input_tokens": 100, "request_id": "task-1"})
    calls.call("post", route, body={"category": "general", "estimated_input_tokens": 200, "request_id": "task-1"}, expect=409)
    calls.call("post", usage, body={"model": "gpt-4o", "input_tokens": 800, "output_tokens": 0}, expect=201)
    fallback = calls.call("post", route, body={"category": "general", "estimated_input_tokens": 100})
    calls.call("post", route, body={"category": "security_auth_change"}, expect=429)
    calls.call("post", usage, body={"model": "claude-sonnet-4-5", "status": "error"}, expect=201)
    calls.call("post", route, body={"category": "drafting"})
    calls.call("post", route, body={"tier": "cheap", "dry_run": True})
    calls.call("post", route, body={"category": "archive"}, expect=503)
    calls.call("post", route, body={"category": "nope"}, expect=400)
    calls.call("post", route, body={"category": "general", "estimated_input_tokens": "many"}, expect=400)

    report = {"decision_id": first["decision_id"], "input_tokens": 90, "output_tokens": 10, "idempotency_key": "call-1"}
    calls.call("post", usage, body=report, expect=201)
    calls.call("post", usage, body=report, expect=200)
    calls.call("post", usage, body=report | {"output_tokens": 11}, expect=409)
    calls.call("post", usage, body={"decision_id": "00000000-0000-4000-8000-000000000000", "input_tokens": 1, "output_tokens": 1},
               expect=404)
    calls.call("post", usage, body={"decision_id": fallback["decision_id"], "status": "not_sent"}, expect=201)

    calls.call("get", "/api/v1/quotas")
    calls.call("get", "/api/v1/quotas/tuning")
    calls.call("get", "/api/v1/models")
    calls.call("post", "/api/v1/models/gpt-4o/clear-not-found", "/api/v1/models/{key}/clear-not-found")
    calls.call("post", "/api/v1/models/nope/clear-not-found", "/api/v1/models/{key}/clear-not-found", expect=404)
    calls.call("get", "/api/v1/decisions")
    calls.call("get", "/api/v1/decisions?outcome=downgraded", expect=400)
    calls.call("get", "/api/v1/health")
    document = calls.call("get", "/api/v1/policy")
    calls.call("put", "/api/v1/policy?plan=true", body=document)
    calls.call("put", "/api/v1/policy", body="x", expect=415, content_type="text/plain")
    calls.call("get", "/api/v1/nope", expect=404)
    calls.call("post", "/api/schema/", expect=405)
    calls.call("get", "/api/v1/quotas", expect=401, client=APIClient(), HTTP_AUTHORIZATION="Bearer nope")
    return calls.answers


def test_every_operation_of_the_schema_is_walked(answers):
    document = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operations = {(method, path) for path, item in document["paths"].items() for method in item if method != "parameters"}

    assert len(operations) >= 10
    assert operations <= {(method, path) for method, path, _, _ in answers}


def test_every_answer_keeps_one_shape_per_concept(answers):
    found = [f"{method.upper()} {path} {status}{problem}" for method, path, status, body in answers
             if (method, path, status) != ("get", "/api/v1/policy", 200)  # the policy file's own format
             for problem in problems(body)]

    assert found == []


def test_an_error_says_what_went_wrong_as_error_and_detail(answers):
    errors = [body for _, _, status, body in answers if status >= 400]

    assert errors and all(isinstance(body["error"], str) and isinstance(body["detail"], str) and body["detail"] for body in errors)
    assert all("detail" not in body for _, _, status, body in answers if status < 400)


def test_a_refusal_gives_why_the_decision_went_so_apart_from_the_errors_sentence(answers):
    refusals = [body for _, path, status, body in answers if path == "/api/v1/route" and status in (429, 503)]

    assert {body["error"] for body in refusals} == {"quota_exceeded", "no_capacity"}
    for body in refusals:
        assert body["reason"] and body["detail"] and body["reason"] != body["detail"]
        assert body["primary"]["key"] == body["trace"][0]["model"]["key"]


def test_times_in_traces_are_rfc_3339_utc(answers):
    entries = [entry for _, path, _, body in answers if path == "/api/v1/route" for entry in body.get("trace", [])]

    assert any(entry["until"] for entry in entries if entry["cause"] == "cooldown")
    assert any(quota["frees_at"] for entry in entries if entry["cause"] == "quota" for quota in entry["quotas"])


def test_the_decision_is_decision_id_everywhere(answers):
    decisions = next(body for method, path, _, body in answers if (method, path) == ("get", "/api/v1/decisions"))["results"]
    reports = [body for _, path, status, body in answers if path == "/api/v1/usage" and status < 400]
    routed = [body for _, path, status, body in answers if path == "/api/v1/route" and status in (200, 429, 503)]

    assert all(row["decision_id"] for row in decisions)
    assert {body["decision_id"] for body in routed} - {None} <= {row["decision_id"] for row in decisions}
    assert {body["decision_id"] for body in reports} - {None} <= {row["decision_id"] for row in decisions}
    assert all(body["usage_id"] for body in reports)
    assert Policy.current().version >= 1
