"""GET /api/v1/decisions: the audit history, its filters, pagination and CSV export."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from router.models import Decision
from router.shapes import api_trace, as_json
from tests.factories import LLMModelFactory, make_route

NOW = datetime.now(tz=UTC).replace(microsecond=0)


def decision(minutes_ago: int, outcome="primary", category="general", model="gpt-4o", provider="openai", **fields) -> Decision:
    return Decision.objects.create(
        created_at=NOW - timedelta(minutes=minutes_ago), caller="svc", category=category, complexity="medium",
        outcome=outcome, model_key=model if outcome in ("primary", "fallback") else "",
        provider_slug=provider if outcome in ("primary", "fallback") else "", primary_key="gpt-4o",
        reason=f"{outcome} {minutes_ago} min ago", trace=[{"model": "gpt-4o", "verdict": "chosen", "reason": "within limits"}],
        policy_version=3, **fields,
    )


@pytest.fixture
def history(db):
    """Five decisions, one per minute, newest last."""
    return [
        decision(50, "primary"),
        decision(40, "fallback", model="glm-4-5", provider="zhipu"),
        decision(30, "failed_fast", category="security_auth_change"),
        decision(20, "exhausted", category="auxiliary_agents"),
        decision(10, "fallback", category="auxiliary_agents", model="claude-3-5-haiku", provider="anthropic"),
    ]


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["decision_id"] for row in response.json()["results"]]


def test_it_lists_decisions_newest_first_with_the_fields_of_the_audit_record(api, history):
    response = api.get("/api/v1/decisions")

    assert ids(response) == [str(d.id) for d in reversed(history)]
    row = response.json()["results"][0]
    assert set(row) >= {"decision_id", "created_at", "caller", "category", "complexity", "tier", "outcome", "model", "primary", "reason",
                        "trace", "policy_version"}
    assert (row["outcome"], row["model"], row["primary"]["key"], row["category"], row["policy_version"]) == (
        "fallback", {"key": "claude-3-5-haiku", "provider": "anthropic"}, "gpt-4o", "auxiliary_agents", 3)
    assert row["trace"] == [{"model": {"key": "gpt-4o", "provider": None}, "verdict": "chosen", "cause": None, "reason": "within limits",
                             "until": None, "quotas": []}]


def test_it_is_paginated_drf_style(api, db):
    Decision.objects.bulk_create([
        Decision(created_at=NOW - timedelta(seconds=n), outcome="primary", model_key="gpt-4o", policy_version=1) for n in range(101)
    ])

    first = api.get("/api/v1/decisions").json()
    second = api.get(first["next"]).json()

    assert set(first) == {"count", "next", "previous", "results"}
    assert first["count"] == 101
    assert len(first["results"]) == 100
    assert first["previous"] is None
    assert "page=2" in first["next"]
    assert len(second["results"]) == 1
    assert second["next"] is None
    assert second["previous"] is not None


@pytest.mark.parametrize("query, expected", [
    ("outcome=fallback", [4, 1]),
    ("outcome=failed_fast", [2]),
    ("category=auxiliary_agents", [4, 3]),
    ("model=glm-4-5", [1]),
    ("provider=anthropic", [4]),
    ("outcome=fallback&provider=zhipu", [1]),
])
def test_it_filters_by_outcome_category_model_and_provider(api, history, query, expected):
    assert ids(api.get(f"/api/v1/decisions?{query}")) == [str(history[i].id) for i in expected]


def test_it_filters_by_time_since_inclusive_and_until_exclusive(api, history):
    since = (NOW - timedelta(minutes=40)).isoformat()
    until = (NOW - timedelta(minutes=20)).isoformat()

    response = api.get("/api/v1/decisions", {"since": since, "until": until})

    assert ids(response) == [str(history[2].id), str(history[1].id)]


@pytest.mark.parametrize("query, field", [
    ("outcome=downgraded", "outcome"),
    ("since=yesterday", "since"),
    ("until=2025-13-45T00:00:00Z", "until"),
])
def test_an_invalid_filter_value_is_answered_with_400_json_naming_the_filter(api, history, query, field):
    response = api.get(f"/api/v1/decisions?{query}")

    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"] == "invalid_request"
    assert field in body["detail"]


def test_a_page_past_the_end_is_answered_with_404_json(api, history):
    response = api.get("/api/v1/decisions?page=9")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def read_csv(response) -> list[dict]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_the_csv_export_holds_exactly_the_filtered_rows(api, history):
    rows = read_csv(api.get("/api/v1/decisions?format=csv&category=auxiliary_agents"))

    assert [row["decision_id"] for row in rows] == [str(history[4].id), str(history[3].id)]
    assert [row["outcome"] for row in rows] == ["fallback", "exhausted"]
    assert rows[0]["model"] == "claude-3-5-haiku"
    assert rows[0]["provider"] == "anthropic"
    assert rows[0]["reason"] == "fallback 10 min ago"
    assert json.loads(rows[0]["trace"]) == as_json(api_trace(history[4].trace))


def test_the_csv_export_is_not_paginated(api, db):
    Decision.objects.bulk_create([
        Decision(created_at=NOW - timedelta(seconds=n), outcome="primary", model_key="gpt-4o", policy_version=1) for n in range(150)
    ])

    assert len(read_csv(api.get("/api/v1/decisions?format=csv"))) == 150


def test_the_csv_export_refuses_an_invalid_filter_with_400_json(api, history):
    response = api.get("/api/v1/decisions?format=csv&outcome=downgraded")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_an_unknown_format_is_refused_with_400(api, history):
    response = api.get("/api/v1/decisions?format=xml")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_decisions_made_through_the_api_are_listed_with_their_caller(api, db):
    make_route("general", [LLMModelFactory(key="gpt-4o")])
    decision_id = api.post("/api/v1/route", {"category": "general"}, format="json").json()["decision_id"]

    [row] = api.get("/api/v1/decisions").json()["results"]

    assert (row["decision_id"], row["caller"], row["outcome"], row["model"]["key"]) == (decision_id, "test-service", "primary", "gpt-4o")


@pytest.mark.parametrize("query", [
    "until=2025-01-01T00:00:00%2B19:46",
    "since=0001-01-01T00:00:00%2B05:00",
    "until=9999-12-31T23:59:59-05:00",
])
def test_a_time_filter_at_the_edge_of_the_calendar_is_answered_not_crashed_on(api, history, query):
    response = api.get(f"/api/v1/decisions?{query}")

    assert response.status_code in (200, 400)
