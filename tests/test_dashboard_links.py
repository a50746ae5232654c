"""Links wherever a name appears: the history's rows and traces, the what-if and the admin's decision page lead to
the route (or tier), the quota, the model and the policy version behind them."""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from providers.models import LLMModel
from router.models import Decision, PolicyVersion
from switchboard.vocabulary import Metric, Window
from tests.factories import LLMModelFactory, ProviderFactory, QuotaFactory, make_route, make_tier

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def database_counters(settings):
    settings.REDIS_URL = ""


@pytest.fixture
def fallback():
    """A fallback from gpt-4o (turned away by openai/tokens-day) to claude-sonnet-4-5, under policy version 12."""
    openai = ProviderFactory(slug="openai", kind="openai")
    anthropic = ProviderFactory(slug="anthropic", kind="anthropic")
    gpt = LLMModelFactory(key="gpt-4o", provider=openai)
    sonnet = LLMModelFactory(key="claude-sonnet-4-5", provider=anthropic)
    quota = QuotaFactory(provider=openai, name="tokens-day", metric=Metric.TOKENS, window=Window.DAY, limit=Decimal(1_000_000))
    route = make_route("general", [gpt, sonnet])
    tier = make_tier("cheap", [sonnet])
    PolicyVersion.objects.create(number=11, author="ops@example.com", source="admin", document={},
                                 changes=[{"change": "added", "kind": "route", "name": "general/any", "fields": {}}])
    blocked = {"quota": "openai/tokens-day", "quota_id": quota.id, "metric": "tokens", "window": "day", "reset": "rolling",
               "used": 900_000, "estimate": 2000, "soft_limit": 800_000, "limit": 1_000_000, "frees_at": time.time() + 3600}
    decision = Decision.objects.create(
        created_at=timezone.now() - timedelta(minutes=3), caller="billing", category="general", complexity="medium",
        outcome="fallback", model_key="claude-sonnet-4-5", provider_slug="anthropic", primary_key="gpt-4o",
        reason="fell back to claude-sonnet-4-5 (gpt-4o: quota)", policy_version=12,
        trace=[{"model": "gpt-4o", "provider": "openai", "verdict": "skipped", "reason": "quota", "quotas": [blocked]},
               {"model": "claude-sonnet-4-5", "provider": "anthropic", "verdict": "chosen", "reason": "within limits"}])
    return {"decision": decision, "quota": quota, "route": route, "tier": tier, "gpt": gpt, "sonnet": sonnet, "openai": openai}


def model_url(model: LLMModel) -> str:
    return reverse("admin:providers_llmmodel_change", args=[model.pk])


def test_a_history_row_links_its_route_models_and_policy_version(client, viewer, fallback):
    page = client.get("/fallbacks/").content.decode()

    row = page[page.index('class="decision-row"'):page.index('class="trace-row"')]
    assert f'<a href="{reverse("admin:router_route_change", args=[fallback["route"].pk])}" title="Edit the route">general' in row
    assert f'<a href="{model_url(fallback["sonnet"])}">claude-sonnet-4-5</a>' in row
    assert f'<a href="{model_url(fallback["gpt"])}">gpt-4o</a>' in row
    assert '<a href="/policy/versions/12/">policy version 12</a>' in page


def test_a_trace_row_links_its_model_provider_and_quota(client, viewer, fallback):
    page = client.get("/fallbacks/").content.decode()

    trace = page[page.index('<table class="trace'):]
    assert f'<a href="{model_url(fallback["gpt"])}"><code>gpt-4o</code></a>' in trace
    assert f'<a href="{reverse("admin:providers_provider_change", args=[fallback["openai"].pk])}">openai</a>' in trace
    assert f'<a class="quota-link" href="/quotas/{fallback["quota"].id}/"><strong>openai/tokens-day</strong></a>' in trace


def test_a_tier_request_links_its_tier(client, viewer, fallback):
    Decision.objects.filter(pk=fallback["decision"].pk).update(category="", complexity="", tier="cheap")

    page = client.get("/fallbacks/").content.decode()

    assert f'href="{reverse("admin:router_tier_change", args=[fallback["tier"].pk])}" title="Edit the tier"' in page


def test_a_policy_version_link_shows_that_version_or_the_change_before_it(client, viewer, fallback):
    page = client.get("/policy/versions/12/").content.decode()

    assert "Version 12 changed no policy" in page and "the policy then was version 11" in page
    assert "+ route general/any" in page
    assert client.get("/policy/versions/11/").status_code == 200
    assert client.get("/policy/versions/10/").status_code == 404


def test_the_admin_decision_page_shows_the_trace_as_a_linked_table(admin_client, fallback):
    page = admin_client.get(reverse("admin:router_decision_change", args=[fallback["decision"].pk])).content.decode()

    trace = page[page.index('<div class="decision-trace">'):]
    assert f'Route: <a href="{reverse("admin:router_route_change", args=[fallback["route"].pk])}">' in trace
    assert 'Policy: <a href="/policy/versions/12/">version 12</a>' in trace
    assert f'<a href="{model_url(fallback["gpt"])}">gpt-4o</a>' in trace
    assert f'<a href="/quotas/{fallback["quota"].id}/">openai/tokens-day</a>' in trace
    assert f'(<a href="{reverse("admin:providers_quota_change", args=[fallback["quota"].id])}">edit</a>)' in trace
    assert "<td>skipped</td>" in trace and "<td>chosen</td>" in trace


def test_the_what_if_links_its_trace_and_policy_version(client, viewer, fallback):
    page = client.get("/what-if/", {"category": "general", "complexity": "medium", "estimated_input_tokens": 100,
                                    "estimated_output_tokens": 100}).content.decode()

    assert f'<a href="{model_url(fallback["gpt"])}"><code>gpt-4o</code></a>' in page
    assert '<a href="/policy/versions/' in page


def test_a_trace_stored_without_providers_still_shows(client, viewer, fallback):
    Decision.objects.filter(pk=fallback["decision"].pk).update(
        trace=[{"model": "gpt-4o", "verdict": "skipped", "reason": "cooldown", "detail": "cooling down", "until": time.time() + 60}])

    page = client.get("/fallbacks/").content.decode()

    assert '<td data-label="Provider">—</td>' in page
