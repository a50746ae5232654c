"""A 404 sticks: a model a real call reported `not_found` stays out of routing until a one-token probe of the
availability refresh answers or a person brings it back (the admin's action, or the API with the admin scope);
the provider's listing naming it does not bring it back."""

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from providers.adapters import base
from providers.models import LLMModel
from providers.refresh import refresh_provider
from router.snapshot import forget_snapshot
from tests.calls import report, route
from tests.factories import LLMModelFactory, ProviderFactory, make_api_key, make_route
from tests.provider_servers import FakeAnthropic, FakeBedrock, foundation_model, use_fake_aws

ANTHROPIC_KEY = "sk-ant-api03-not-found-test-key"
SONNET = "claude-3-5-sonnet-20241022"
HAIKU = "claude-3-haiku-20240307"
NOVA_PRO = "amazon.nova-pro-v1:0"
NOVA_LITE = "amazon.nova-lite-v1:0"


@pytest.fixture(autouse=True)
def no_retries(monkeypatch):
    monkeypatch.setattr(base, "SDK_MAX_RETRIES", 0)
    monkeypatch.setenv("TEST_ANTHROPIC_API_KEY", ANTHROPIC_KEY)


@pytest.fixture
def anthropic_api():
    """Lists both models; a one-token call to Sonnet answers 404 until `usable` says otherwise."""
    with FakeAnthropic(listed=[SONNET, HAIKU], api_key=ANTHROPIC_KEY, usable={HAIKU}) as server:
        yield server


@pytest.fixture
def anthropic(db, anthropic_api):
    provider = ProviderFactory(slug="anthropic", kind="anthropic", base_url=anthropic_api.url, credential_env="TEST_ANTHROPIC_API_KEY")
    sonnet = LLMModelFactory(key="claude-3-5-sonnet", provider=provider, model_id=SONNET)
    haiku = LLMModelFactory(key="claude-3-haiku", provider=provider, model_id=HAIKU)
    make_route("general", [sonnet, haiku])
    return provider


def chosen(api) -> str:
    forget_snapshot()  # as every process does within ROUTER_POLICY_RECHECK_SECONDS of a change
    return route(api, category="general", dry_run=True)["model"]["key"]


def reported_not_found(api) -> None:
    decision = route(api, category="general")
    assert decision["model"]["key"] == "claude-3-5-sonnet"
    report(api, decision_id=decision["decision_id"], status="not_found")
    assert chosen(api) == "claude-3-haiku"


def test_a_listing_does_not_bring_back_a_model_a_call_found_missing(api, anthropic):
    reported_not_found(api)

    refresh_provider(anthropic)

    sonnet = LLMModel.objects.get(key="claude-3-5-sonnet")
    assert (sonnet.availability, sonnet.not_found_at is not None) == ("unavailable", True)
    assert "one-token probe" in sonnet.availability_reason
    assert chosen(api) == "claude-3-haiku"
    assert LLMModel.objects.get(key="claude-3-haiku").availability == "available"


def test_a_probe_that_answers_brings_it_back(api, anthropic, anthropic_api):
    reported_not_found(api)
    anthropic_api.usable.add(SONNET)  # the key was given access

    refresh_provider(anthropic)

    sonnet = LLMModel.objects.get(key="claude-3-5-sonnet")
    assert (sonnet.availability, sonnet.not_found_at) == ("available", None)
    assert chosen(api) == "claude-3-5-sonnet"
    refresh_provider(anthropic)
    assert [r.body["model"] for r in anthropic_api.requests if r.path == "/v1/messages"] == [SONNET]  # one probe; none once back


def test_a_person_brings_it_back_through_the_api(api, anthropic):
    reported_not_found(api)

    response = api.post("/api/v1/models/claude-3-5-sonnet/clear-not-found")

    assert response.status_code == 200
    assert (response.json()["availability"], response.json()["not_found_at"]) == ("unknown", None)
    assert "cleared by API key 'test-service'" in response.json()["availability_reason"]
    assert chosen(api) == "claude-3-5-sonnet"


def test_bringing_a_model_back_takes_the_admin_scope_and_a_known_model(api, anthropic):
    reported_not_found(api)
    service = APIClient()
    service.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key('service', scopes=('route', 'usage', 'read'))}")

    assert service.post("/api/v1/models/claude-3-5-sonnet/clear-not-found").status_code == 403
    assert api.post("/api/v1/models/claude-9/clear-not-found").json()["error"] == "not_found"
    assert chosen(api) == "claude-3-haiku"


def test_a_person_brings_it_back_in_the_admin(api, anthropic, client):
    reported_not_found(api)
    client.force_login(User.objects.create_superuser("ops"))
    sonnet = LLMModel.objects.get(key="claude-3-5-sonnet")

    response = client.post("/admin/providers/llmmodel/", {"action": "clear_not_found", "_selected_action": [sonnet.pk]}, follow=True)

    assert "1 model(s) brought back into routing" in response.content.decode()
    assert chosen(api) == "claude-3-5-sonnet"


def test_a_bedrock_model_comes_back_only_when_a_converse_probe_answers(api, db, monkeypatch):
    with FakeBedrock(models=[foundation_model(NOVA_PRO), foundation_model(NOVA_LITE)], profiles=[]) as bedrock:
        use_fake_aws(monkeypatch, bedrock_url=bedrock.url, runtime_url=bedrock.url)
        provider = ProviderFactory(slug="bedrock", kind="bedrock", region="us-east-1")
        make_route("general", [LLMModelFactory(key="nova-pro", provider=provider, model_id=NOVA_PRO),
                               LLMModelFactory(key="nova-lite", provider=provider, model_id=NOVA_LITE)])
        decision = route(api, category="general")
        report(api, decision_id=decision["decision_id"], status="not_found")

        refresh_provider(provider)
        assert chosen(api) == "nova-lite"

        bedrock.usable.add(NOVA_PRO)
        refresh_provider(provider)
        assert chosen(api) == "nova-pro"
