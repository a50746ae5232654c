"""GET /api/v1/models: the catalog with availability and the id services must send."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from switchboard.vocabulary import ProviderKind
from tests.factories import LLMModelFactory, ProviderFactory


@pytest.fixture
def catalog(db):
    openai = ProviderFactory(slug="openai", kind=ProviderKind.OPENAI)
    bedrock = ProviderFactory(slug="bedrock", kind=ProviderKind.BEDROCK, region="eu-west-1")
    LLMModelFactory(key="gpt-4o", provider=openai, model_id="gpt-4o-2024-08-06", input_cost_per_mtok=Decimal("2.5"),
                    output_cost_per_mtok=Decimal("10"), context_window=128_000, availability="available",
                    checked_at=datetime(2025, 11, 25, 9, 30, tzinfo=UTC))
    LLMModelFactory(key="bedrock-sonnet-4-5", provider=bedrock, model_id="anthropic.claude-sonnet-4-5-20250929-v1:0",
                    invoke_id="eu.anthropic.claude-sonnet-4-5-20250929-v1:0", availability="unavailable",
                    availability_reason="no access granted", enabled=False)


def models(api, query="") -> dict[str, dict]:
    response = api.get(f"/api/v1/models{query}")
    assert response.status_code == 200, response.content
    return {row["key"]: row for row in response.json()["results"]}


def test_it_lists_the_catalog_with_the_fields_of_the_design(api, catalog):
    row = models(api)["gpt-4o"]

    assert set(row) >= {"key", "provider", "model_id", "invoke_id", "availability", "availability_reason", "checked_at", "enabled",
                        "context_window", "input_cost_per_mtok", "output_cost_per_mtok"}
    assert (row["provider"], row["model_id"], row["availability"], row["enabled"], row["context_window"]) == (
        "openai", "gpt-4o-2024-08-06", "available", True, 128_000)
    assert Decimal(row["input_cost_per_mtok"]) == Decimal("2.5")
    assert Decimal(row["output_cost_per_mtok"]) == Decimal("10")
    assert datetime.fromisoformat(row["checked_at"].replace("Z", "+00:00")) == datetime(2025, 11, 25, 9, 30, tzinfo=UTC)


def test_the_invoke_id_is_the_model_id_when_no_profile_was_resolved(api, catalog):
    assert models(api)["gpt-4o"]["invoke_id"] == "gpt-4o-2024-08-06"


def test_the_invoke_id_is_the_resolved_inference_profile(api, catalog):
    row = models(api)["bedrock-sonnet-4-5"]

    assert row["model_id"] == "anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert row["invoke_id"] == "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert (row["availability"], row["availability_reason"], row["enabled"]) == ("unavailable", "no access granted", False)


def test_it_lists_models_in_key_order_paginated(api, catalog):
    body = api.get("/api/v1/models").json()

    assert set(body) == {"count", "next", "previous", "results"}
    assert [row["key"] for row in body["results"]] == ["bedrock-sonnet-4-5", "gpt-4o"]


def test_it_filters_by_availability_and_enabled(api, catalog):
    assert list(models(api, "?availability=unavailable")) == ["bedrock-sonnet-4-5"]
    assert list(models(api, "?enabled=true")) == ["gpt-4o"]


def test_an_invalid_filter_value_is_answered_with_400(api, catalog):
    response = api.get("/api/v1/models?availability=sometimes")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "availability" in response.json()["detail"]
