"""The what-if page: the decision the router would make under assumed quota usage and outages, counting nothing."""

from decimal import Decimal

import pytest
from django.utils import timezone

from providers.models import LLMModel
from router.models import Category, Decision, UsageEvent
from router.selectors import quota_status
from switchboard.vocabulary import Metric, Window
from tests.factories import CategoryFactory, LLMModelFactory, ProviderFactory, QuotaFactory, make_route, make_tier

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def dashboard_settings(request, settings):
    """Database counters unless the test runs on both backends."""
    if "counters" not in request.fixturenames:
        settings.REDIS_URL = ""


@pytest.fixture
def policy():
    openai = ProviderFactory(slug="openai", kind="openai")
    anthropic = ProviderFactory(slug="anthropic", kind="anthropic")
    bedrock = ProviderFactory(slug="bedrock", kind="bedrock", region="us-east-1")
    gpt = LLMModelFactory(key="gpt-4o", provider=openai)
    mini = LLMModelFactory(key="gpt-4o-mini", provider=openai, context_window=128_000)
    sonnet = LLMModelFactory(key="claude-sonnet-4-5", provider=anthropic)
    haiku = LLMModelFactory(key="bedrock-haiku", provider=bedrock, model_id="anthropic.claude-3-5-haiku-20241022-v1:0",
                            invoke_id="us.anthropic.claude-3-5-haiku-20241022-v1:0")
    openai_day = QuotaFactory(provider=openai, name="tokens-day", metric=Metric.TOKENS, window=Window.DAY, limit=Decimal(1_000_000))
    sonnet_pool = QuotaFactory(provider=anthropic, name="sonnet-pool", metric=Metric.TOKENS, window=Window.WEEK,
                               limit=Decimal(20_000_000), models=[sonnet])
    make_route("general", [gpt, sonnet, mini], complexity="medium")
    make_route("general", [mini, haiku], complexity="low")
    make_route(CategoryFactory(slug="security_auth_change", fallback=Category.Fallback.NEVER), [gpt])
    make_tier("cheap", [haiku, mini])
    return {"openai_day": openai_day, "sonnet_pool": sonnet_pool, "gpt": gpt, "mini": mini, "sonnet": sonnet, "haiku": haiku}


def ask(client, **params):
    defaults = {"complexity": "medium", "estimated_input_tokens": 1200, "estimated_output_tokens": 800}
    return client.get("/what-if/", defaults | params)


def test_the_form_offers_every_category_tier_quota_and_model(client, viewer, policy):
    response = client.get("/what-if/")

    page = response.content.decode()
    assert response.status_code == 200
    assert response.context["what_if"] is None
    assert '<option value="security_auth_change">' in page and '<option value="cheap">' in page
    assert f'name="quota_{policy["sonnet_pool"].id}"' in page and "anthropic/sonnet-pool" in page
    assert "tokens per week, now 0%" in page
    assert page.count('type="checkbox" name="unavailable"') == 4
    assert "Pick a category (or a tier)" in page


def test_the_primary_within_its_limits_is_chosen(client, viewer, policy):
    response = ask(client, category="general")

    what_if = response.context["what_if"]
    page = response.content.decode()
    assert what_if.decision.outcome == "primary"
    assert what_if.http_status == 200
    assert '<strong id="chosen-model">gpt-4o</strong>' in page
    assert "HTTP 200" in page
    assert "primary gpt-4o is within its limits" in page


def test_it_shows_the_invoke_id_the_service_must_send(client, viewer, policy):
    page = ask(client, tier="cheap").content.decode()

    assert '<strong id="chosen-model">bedrock-haiku</strong> at bedrock (us-east-1)' in page
    assert '<code id="chosen-invoke-id">us.anthropic.claude-3-5-haiku-20241022-v1:0</code>' in page


def test_a_quota_assumed_over_its_soft_limit_makes_it_fall_back(client, viewer, policy):
    response = ask(client, category="general", **{f"quota_{policy['openai_day'].id}": "85"})

    what_if = response.context["what_if"]
    page = response.content.decode()
    assert what_if.decision.outcome == "fallback"
    assert what_if.decision.model_key == "claude-sonnet-4-5"
    assert "fell back to claude-sonnet-4-5 (gpt-4o: quota)" in page
    # The trace table: gpt-4o passed over with the quota named, claude chosen.
    assert ("<strong>openai/tokens-day</strong></a> (tokens per day, rolling): used 850.0K tokens + this request 2.0K tokens of 1.0M tokens, "
            "soft limit 800.0K tokens") in page
    assert page.count('verdict-skipped">skipped</span>') == 1 and page.count('verdict-chosen">chosen</span>') == 1
    # The quotas as assumed: the override is marked.
    assert [(q.quota.label, q.overridden, round(q.ratio, 2)) for q in what_if.quotas] == [
        ("anthropic/sonnet-pool", False, 0.0), ("openai/tokens-day", True, 0.85),
    ]


def test_a_model_marked_unavailable_is_passed_over(client, viewer, policy):
    response = client.get("/what-if/", {"category": "general", "complexity": "medium", "estimated_input_tokens": 10,
                                        "estimated_output_tokens": 10, "unavailable": ["gpt-4o", "claude-sonnet-4-5"]})

    what_if = response.context["what_if"]
    assert what_if.decision.model_key == "gpt-4o-mini"
    assert [(e["model"], e["reason"]) for e in what_if.decision.trace] == [
        ("gpt-4o", "unavailable"), ("claude-sonnet-4-5", "unavailable"), ("gpt-4o-mini", "within limits"),
    ]
    assert "Marked unavailable: claude-sonnet-4-5, gpt-4o" in response.content.decode()


def test_a_never_fallback_category_over_quota_is_refused_with_429(client, viewer, policy):
    response = ask(client, category="security_auth_change", **{f"quota_{policy['openai_day'].id}": "100"})

    what_if = response.context["what_if"]
    page = response.content.decode()
    assert what_if.decision.outcome == "failed_fast"
    assert what_if.http_status == 429
    assert "HTTP 429 · quota_exceeded" in page
    assert "Retry-After: 60 s" in page  # nothing is counted in fact, so no usage frees up: the default
    assert '<strong id="chosen-model">refused</strong>' in page


def test_every_candidate_unavailable_is_refused_with_503(client, viewer, policy):
    response = client.get("/what-if/", {"category": "general", "complexity": "low", "estimated_input_tokens": 0,
                                        "estimated_output_tokens": 0, "unavailable": ["gpt-4o-mini", "bedrock-haiku"]})

    what_if = response.context["what_if"]
    assert what_if.decision.outcome == "exhausted"
    assert what_if.http_status == 503
    assert "HTTP 503 · no_capacity" in response.content.decode()


def test_an_estimate_beyond_the_context_window_is_a_reason_in_the_trace(client, viewer, policy):
    response = ask(client, category="general", complexity="low", estimated_input_tokens=150_000, estimated_output_tokens=0)

    trace = response.context["what_if"].decision.trace
    assert trace[0]["reason"] == "context_window" and response.context["what_if"].decision.model_key == "bedrock-haiku"


def test_neither_category_nor_tier_uses_the_default_tier(client, viewer, policy):
    from router.models import Policy, Tier

    Policy.objects.filter(pk=1).update(default_tier=Tier.objects.get(slug="cheap"))
    LLMModel.objects.filter(key="bedrock-haiku").update(enabled=False)

    response = ask(client)

    what_if = response.context["what_if"]
    assert what_if.decision.tier == "cheap"
    assert what_if.decision.model_key == "gpt-4o-mini"
    assert "tier cheap" in response.content.decode()


def test_nothing_is_counted_or_stored(client, viewer, policy, counters):
    UsageEvent.objects.create(created_at=timezone.now(), model_key="gpt-4o", provider_slug="openai", input_tokens=1000)
    before = {row.quota.id: row.used for row in quota_status()}

    for params in ({"category": "general"}, {"tier": "cheap"}, {"category": "security_auth_change", f"quota_{policy['openai_day'].id}": "100"}):
        assert ask(client, **params).status_code == 200

    assert Decision.objects.count() == 0
    assert UsageEvent.objects.count() == 1
    assert {row.quota.id: row.used for row in quota_status()} == before
    assert before[policy["openai_day"].id] == 1000


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"category": "no-such-category"}, "category", "Select a valid choice"),
    ({"tier": "platinum"}, "tier", "Select a valid choice"),
    ({"category": "general", "complexity": "extreme"}, "complexity", "Select a valid choice"),
    ({"category": "general", "estimated_input_tokens": -5}, "estimated_input_tokens", "greater than or equal to 0"),
    ({"category": "general", "estimated_output_tokens": "lots"}, "estimated_output_tokens", "Enter a whole number"),
    ({"category": "general", "estimated_input_tokens": ""}, "estimated_input_tokens", "This field is required"),
    ({"category": "general", "quota_OPENAI": "101"}, "quota_OPENAI", "less than or equal to 100"),
    ({"category": "general", "quota_OPENAI": "-1"}, "quota_OPENAI", "greater than or equal to 0"),
    ({"category": "general", "quota_OPENAI": "eighty"}, "quota_OPENAI", "Enter a number"),
    ({"category": "general", "unavailable": "gpt-5"}, "unavailable", "Select a valid choice"),
    ({"category": "general", "tier": "cheap"}, "__all__", "Pick a category or a tier, not both."),
    ({"category": "security_auth_change", "complexity": "high"}, None, None),  # a route for 'any' serves every complexity
])
def test_invalid_input_is_a_form_error_never_a_500(client, viewer, policy, params, field, message):
    quota_field = f"quota_{policy['openai_day'].id}"
    params = {k.replace("quota_OPENAI", quota_field): v for k, v in params.items()}
    response = ask(client, **params)

    assert response.status_code == 200
    if field is None:
        assert response.context["what_if"] is not None
        return
    field = field.replace("quota_OPENAI", quota_field)
    assert message in " ".join(response.context["form"].errors[field])
    assert response.context["what_if"] is None
    assert message.split("“")[0] in response.content.decode().replace("&#x27;", "'")


def test_a_complexity_without_a_route_is_a_form_error_naming_the_valid_ones(client, viewer, policy):
    response = ask(client, category="general", complexity="high")

    assert response.status_code == 200
    assert response.context["what_if"] is None
    assert "Category &#x27;general&#x27; has no route for complexity &#x27;high&#x27;. Routes exist for: low, medium." in response.content.decode()
